"""Pure domain logic: no I/O, no Kafka, no HTTP; shared by Faust agents and Bytewax jobs."""
