from alerts.sources.base import (
    Reading,
    Source,
    SourceError,
    as_number,
    bounded_labels,
    require_url,
)
from opsconsole import http


class PrometheusSource(Source):
    """An instant PromQL query; each series of the result becomes one labelled sample."""

    kind = "prometheus"
    label = "Prometheus query"

    @classmethod
    def validate(cls, config, secret):
        config = super().validate(config, secret)
        require_url(config)
        if not (config.get("query") or "").strip():
            raise ValueError("Set 'query' to a PromQL expression.")
        return config

    def pull(self) -> list[Reading]:
        headers = {"Authorization": f"Bearer {self.secret}"} if self.secret else {}
        try:
            response = http.request(
                "GET", self.config["url"].rstrip("/") + "/api/v1/query",
                params={"query": self.config["query"]}, headers=headers, secrets=[self.secret],
            )  # fmt: skip
        except http.HttpError as exc:
            raise SourceError(exc.message) from None
        try:
            body = response.json()
        except ValueError:
            raise SourceError(
                f"Prometheus: the answer is not JSON ({http.describe_body(response)})"
            ) from None
        if not isinstance(body, dict) or body.get("status") != "success":
            kind = body.get("errorType") if isinstance(body, dict) else None
            raise SourceError(f"Prometheus refused the query ({str(kind or 'no error type')[:40]})")
        data = body["data"]
        if data["resultType"] == "scalar":
            return [(as_number(data["result"][1], "scalar"), {})]
        if data["resultType"] != "vector":
            raise SourceError(f"Prometheus returned a {data['resultType']}; use an instant vector")
        return [
            (
                as_number(item["value"][1], "series"),
                bounded_labels({k: v for k, v in item["metric"].items() if k != "__name__"}),
            )
            for item in data["result"]
        ]
