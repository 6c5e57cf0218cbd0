"""The shipped recovery procedures, editable: API failure, database failure and
complete outage (six steps each), plus cache failure and upstream API failure."""

from django.db import migrations

RUNBOOKS = {
    "API failure": [
        "Confirm the failure: check the API health check, the error-rate panel and recent deployments.",
        "If a deployment went out in the last hour, request a rollback to the last stable version.",
        "Restart the API service through the provider and watch its health check.",
        "Check the database and Redis checks; if either is unhealthy, switch to its runbook.",
        "Scale the API up (more replicas) if it is failing under load.",
        "Confirm recovery: health checks green for 10 minutes, then resolve the incident with a note.",
    ],
    "Database failure": [
        "Confirm the database check is unhealthy and read its last error.",
        "Put the API in read-only mode (set READ_ONLY=true through the failover action).",
        "If the primary is lost, promote the standby (failover action) and point DATABASE_URL at it.",
        "If no standby is usable, restore the newest verified backup into a new database.",
        "Verify the data: the target's verification checks and a spot check of recent writes.",
        "Turn read-only mode off, watch the error rate, and record the data-loss window (RPO).",
    ],
    "Complete outage": [
        "Open an incident channel and name an incident lead.",
        "Check the platform's status page and the console's system status endpoint.",
        "Restore the database first (standby or newest verified backup), then Redis, then the API.",
        "Redeploy the last stable version of the API and worker.",
        "Run the post-deploy checks and watch the error rate for 10 minutes.",
        "Tell users the service is back; write down the timeline and the measured recovery time (RTO).",
    ],
    "Cache failure": [
        "Confirm the Redis check is unhealthy.",
        "Bypass the cache (set CACHE_BYPASS=true through the failover action); the API falls back to in-memory.",
        "Restart or replace Redis through the provider.",
        "Turn the cache bypass off and watch the cache hit rate recover.",
    ],
    "Upstream API failure": [
        "Confirm the upstream (YouTube API) check is failing and whether the quota is exhausted.",
        "Switch to cache-only mode so users keep seeing cached results.",
        "Tell users of the degraded service (status page, banner).",
        "When the upstream answers again, leave cache-only mode and watch the quota usage.",
    ],
}


def create(apps, schema_editor):
    Runbook = apps.get_model("dr", "Runbook")
    RunbookStep = apps.get_model("dr", "RunbookStep")
    for scenario, steps in RUNBOOKS.items():
        runbook, created = Runbook.objects.get_or_create(scenario=scenario)
        if created:
            RunbookStep.objects.bulk_create(
                [
                    RunbookStep(runbook=runbook, position=i, text=t)
                    for i, t in enumerate(steps, start=1)
                ]
            )


def remove(apps, schema_editor):
    apps.get_model("dr", "Runbook").objects.filter(scenario__in=list(RUNBOOKS)).delete()


class Migration(migrations.Migration):
    dependencies = [("dr", "0004_runbooks")]
    operations = [migrations.RunPython(create, remove)]
