from alerts.sources.base import Reading, Source, SourceError, as_number, require_url
from opsconsole import http


def dig(document, path: str):
    """Follow "a.b.0.c" into a JSON document."""
    current = document
    for part in [p for p in path.split(".") if p]:
        if isinstance(current, list) and part.lstrip("-").isdigit():
            try:
                current = current[int(part)]
            except IndexError:
                raise SourceError(f"{path}: index {part} is out of range") from None
        elif isinstance(current, dict) and part in current:
            current = current[part]
        else:
            raise SourceError(f"{path}: no {part!r} in the document")
    return current


class HttpJsonSource(Source):
    kind = "http_json"
    label = "HTTP JSON"

    @classmethod
    def validate(cls, config, secret):
        config = super().validate(config, secret)
        require_url(config)
        if not (config.get("path") or "").strip():
            raise ValueError("Set 'path' to where the number is, e.g. 'stats.error_rate'.")
        return config

    def pull(self) -> list[Reading]:
        headers = {"Authorization": self.secret} if self.secret else {}
        try:
            response = http.request(
                "GET", self.config["url"], headers=headers, secrets=[self.secret]
            )
        except http.HttpError as exc:
            raise SourceError(exc.message) from None
        try:
            document = response.json()
        except ValueError:
            raise SourceError("the response is not JSON") from None
        return [(as_number(dig(document, self.config["path"]), self.config["path"]), {})]
