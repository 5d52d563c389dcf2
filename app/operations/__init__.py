"""Operations: the layer between the face (``app.cli``) and the lifecycle packages. It runs this machine's local
stack (real PostgreSQL, Kafka (KRaft), Ray head, MLflow server, Prometheus, Alertmanager and Airflow on loopback,
under supervisord), deploys the Serve app and makes worlds. It starts lifecycle code as processes or Ray jobs and
imports only the contracts (the rest of ``app``); only the face imports it."""
