"""Local stack runner: real Apache Kafka (KRaft), Redis and PostgreSQL under SOMA_STACK_DIR."""

from infra.stack.errors import PortTakenError, StackError
from infra.stack.kafka import kafka_running, restart_kafka, start_kafka, stop_kafka
from infra.stack.runner import down, status, up
from infra.stack.service import ServiceStatus

__all__ = [
    "PortTakenError",
    "ServiceStatus",
    "StackError",
    "down",
    "kafka_running",
    "restart_kafka",
    "start_kafka",
    "status",
    "stop_kafka",
    "up",
]
