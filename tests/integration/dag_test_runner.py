"""Run inside Airflow's environment: ``python dag_test_runner.py '<run_conf json>'`` runs the retraining DAG once
with ``dag.test()`` (tasks in this process, against the real services the connections name) and prints the run's
final state and each task's as one JSON line."""

import json
import sys

from airflow.dag_processing.dagbag import DagBag

DAG_ID = "riskray_retraining"
PREFIX = "riskray-dag-test: "

if __name__ == "__main__":
    bag = DagBag(dag_folder=sys.argv[2])
    if bag.import_errors:
        raise SystemExit(f"DAG import errors: {bag.import_errors}")
    run = bag.dags[DAG_ID].test(run_conf=json.loads(sys.argv[1]))
    tasks = {ti.task_id: str(ti.state) for ti in run.get_task_instances()}
    print(PREFIX + json.dumps({"run_id": run.run_id, "state": str(run.state), "tasks": tasks}))
