"""Stream flows: Faust agents for always-on flows, Bytewax dataflows for bounded jobs."""
