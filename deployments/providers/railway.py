"""Railway through its public GraphQL API."""

from __future__ import annotations

import time
from typing import Any

from deployments.providers.base import Provider, ProviderError
from opsconsole import http

ENDPOINT = "https://backboard.railway.com/graphql/v2"
DONE = {"SUCCESS"}
BROKEN = {"FAILED", "CRASHED", "REMOVED"}

DEPLOYMENT = "query deployment($id: String!) { deployment(id: $id) { id status canRollback } }"
ROLLBACK = "mutation deploymentRollback($id: String!) { deploymentRollback(id: $id) }"
LATEST = (
    "query deployments($input: DeploymentListInput!) { deployments(input: $input, first: 1) "
    "{ edges { node { id status } } } }"
)
UPSERT = (
    "mutation variableCollectionUpsert($input: VariableCollectionUpsertInput!) "
    "{ variableCollectionUpsert(input: $input) }"
)
# Unrendered: references such as ${{Postgres.DATABASE_URL}} stay references, so an
# import and a later sync keep them flowing instead of freezing today's value.
VARIABLES = (
    "query variables($projectId: String!, $environmentId: String!, $serviceId: String, "
    "$unrendered: Boolean) { variables(projectId: $projectId, environmentId: $environmentId, "
    "serviceId: $serviceId, unrendered: $unrendered) }"
)
# Railway provides these itself (domains, ids, the service name): not the service's to set.
PROVIDED_PREFIX = "RAILWAY_"


class RailwayProvider(Provider):
    kind = "railway"
    label = "Railway"

    @classmethod
    def validate(cls, config, secret):
        config = super().validate(config, secret)
        missing = [k for k in ("project_id", "environment_id", "service_id") if not config.get(k)]
        if missing:
            raise ValueError(f"Missing configuration: {', '.join(missing)}.")
        if config.get("token_type", "bearer") not in ("bearer", "project"):
            raise ValueError("token_type is 'bearer' (account or workspace token) or 'project'.")
        if not secret:
            raise ValueError("Set the secret to a Railway API token.")
        return config

    def _headers(self) -> dict[str, str]:
        if self.config.get("token_type") == "project":
            return {"Project-Access-Token": self.secret}
        return {"Authorization": f"Bearer {self.secret}"}

    def graphql(self, query: str, variables: dict[str, Any]) -> dict[str, Any]:
        try:
            response = http.request(
                "POST",
                self.config.get("endpoint") or ENDPOINT,
                json={"query": query, "variables": variables},
                headers=self._headers(),
                secrets=[self.secret],
                timeout=30,
            )
        except http.HttpError as exc:
            raise ProviderError(f"Railway API: {exc.message}") from None
        try:
            body = response.json()
        except ValueError:
            raise ProviderError(f"Railway API: not JSON ({http.describe_body(response)})") from None
        if not isinstance(body, dict):
            raise ProviderError("Railway API: an unexpected answer")
        if body.get("errors"):
            # Railway's own messages say what is wrong; bounded, and the body is not kept.
            messages = "; ".join(str(e.get("message"))[:120] for e in body["errors"][:3])
            raise ProviderError(f"Railway API: {messages}")
        return body.get("data") or {}

    def _input(self) -> dict[str, str]:
        return {
            "projectId": self.config["project_id"],
            "environmentId": self.config["environment_id"],
            "serviceId": self.config["service_id"],
        }

    def rollback(self, target) -> dict[str, Any]:
        found = self.graphql(DEPLOYMENT, {"id": target.external_id}).get("deployment")
        if not found:
            raise ProviderError(f"Railway has no deployment {target.external_id}")
        if not found.get("canRollback"):
            raise ProviderError(
                f"Railway says deployment {target.external_id} cannot be rolled back to"
            )
        self.graphql(ROLLBACK, {"id": target.external_id})
        return {"rollback_of": target.external_id, "final": self.wait_until_settled()}

    def wait_until_settled(self) -> dict[str, Any]:
        timeout = float(self.config.get("poll_timeout_seconds", 600))
        interval = float(self.config.get("poll_interval_seconds", 5))
        deadline = time.monotonic() + timeout
        while True:
            edges = self.graphql(LATEST, {"input": self._input()})["deployments"]["edges"]
            node = edges[0]["node"] if edges else {}
            status = node.get("status")
            # What is recorded of a deployment: its id, status and time, nothing else.
            kept = {k: node.get(k) for k in ("id", "status", "createdAt") if k in node}
            if status in DONE:
                return kept
            if status in BROKEN:
                raise ProviderError(
                    f"Railway deployment {node.get('id')} ended {status}", {"deployment": kept}
                )
            if time.monotonic() >= deadline:
                raise ProviderError(f"Railway deployment still {status} after {timeout:.0f} s")
            time.sleep(interval)

    def set_variables(self, values: dict[str, str]) -> None:
        self.graphql(
            UPSERT,
            {
                "input": {
                    **self._input(),
                    "variables": values,
                    "replace": False,
                    "skipDeploys": True,
                }
            },
        )

    def variables(self) -> dict[str, str]:
        data = self.graphql(VARIABLES, {**self._input(), "unrendered": True})
        return {
            name: value
            for name, value in (data.get("variables") or {}).items()
            if not name.startswith(PROVIDED_PREFIX)
        }
