from alerts.sources.base import Reading, Source, SourceError, as_number, require_url
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
        body = response.json()
        if body.get("status") != "success":
            raise SourceError(f"Prometheus: {body.get('errorType')}: {body.get('error')}")
        data = body["data"]
        if data["resultType"] == "scalar":
            return [(as_number(data["result"][1], "scalar"), {})]
        if data["resultType"] != "vector":
            raise SourceError(f"Prometheus returned a {data['resultType']}; use an instant vector")
        return [
            (
                as_number(item["value"][1], "series"),
                {k: v for k, v in item["metric"].items() if k != "__name__"},
            )
            for item in data["result"]
        ]
