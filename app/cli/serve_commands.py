"""`riskray serve deploy | status | reload | shutdown | render`: the prediction API on the Ray head."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from app.config import get_settings
from app.schemas import AbMode

serve = typer.Typer(help="The Ray Serve prediction API (/predict, /health, /metrics, /docs).", no_args_is_help=True)


@serve.command("deploy")
def deploy(
    model: Annotated[str, typer.Option(help="champion model: alias or version")] = "champion",
    challenger: Annotated[str | None, typer.Option(help="challenger served beside it: alias or version")] = None,
    ab_mode: Annotated[AbMode, typer.Option(help="canary: a share of requests; shadow: scored, never returned")] = (
        AbMode.off
    ),
    canary_share: Annotated[float, typer.Option(min=0, max=1)] = 0.1,
) -> None:
    """Deploy (or update in place) the prediction API from serve_deployments/serve_config.yaml."""
    from app.operations import serving
    from app.schemas import ServeModelConfig

    settings = get_settings()
    if ab_mode != AbMode.off and challenger is None:
        raise typer.BadParameter("canary and shadow need --challenger", param_hint="--ab-mode")
    models = ServeModelConfig(champion=model, challenger=challenger, ab_mode=ab_mode.value,
                              canary_share=canary_share)
    resolved = serving.deploy(settings, models, typer.echo)
    typer.echo(f"serving version {resolved.champion}"
               + (f" with challenger {resolved.challenger} ({resolved.ab_mode})" if resolved.challenger else "")
               + f" on http://{settings.ray_host}:{settings.serve_port} (docs: /docs)")


@serve.command("reload")
def reload() -> None:
    """Serve the version the champion alias points at now, with its thresholds now, replacing the model in place."""
    from app.operations import serving

    result = serving.reload(get_settings(), typer.echo)
    if result is None:
        typer.echo("riskray is not deployed on Serve: nothing to reload (`riskray serve deploy`)")
        return
    before, after = result
    if before == after:
        typer.echo(f"already serving version {after.champion} ({after.decisions})")
    elif before.champion == after.champion:
        typer.echo(f"serving version {after.champion} with new thresholds ({after.decisions})")
    else:
        typer.echo(f"serving version {before.champion} -> {after.champion} ({after.decisions})")


@serve.command("status")
def status() -> None:
    """The application, its deployments and replicas; exit 1 unless running."""
    from app.operations import serving

    with serving.ServeClient(get_settings()) as client:
        app = client.application()
        models = client.deployed_models()
    if app is None:
        typer.echo("riskray is not deployed")
        raise typer.Exit(1)
    typer.echo(f"application {serving.APP_NAME}: {app['status']}  models: {models.model_dump() if models else '?'}")
    for name, deployment in app.get("deployments", {}).items():
        replicas = deployment.get("replicas", [])
        states = ", ".join(sorted(r.get("state", "?") for r in replicas))
        typer.echo(f"  {name}: {deployment.get('status')}  replicas: {len(replicas)} ({states})")
    if app["status"] != "RUNNING":
        raise typer.Exit(1)


@serve.command("shutdown")
def shutdown() -> None:
    """Remove the prediction API from the Ray head."""
    from app.operations import serving

    with serving.ServeClient(get_settings()) as client:
        client.shutdown()
    typer.echo("Serve applications removed")


@serve.command("render")
def render(production: Annotated[bool, typer.Option(help="the KubeRay RayService's serveConfigV2")] = False) -> None:
    """Print the Serve config (YAML) this project deploys."""
    import yaml

    from app.operations import serving
    from app.schemas import ServeModelConfig

    config = serving.production_config() if production else serving.local_config(get_settings(), ServeModelConfig())
    typer.echo(yaml.safe_dump(json.loads(json.dumps(config)), sort_keys=False))
