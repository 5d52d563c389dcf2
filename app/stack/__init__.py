"""The local stack: real PostgreSQL, Kafka (KRaft), Ray head and MLflow server on loopback, run by supervisord."""
