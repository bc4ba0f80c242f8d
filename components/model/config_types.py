"""What every section of the stack config shares: camelCase keys, nothing
unknown, frozen values, and the small types several sections use."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

Port = Annotated[int, Field(ge=1, le=65535)]

# distribution/reference's grammar: an optional registry (which alone may carry
# a port) before the first slash, lower-case path components, a tag, a digest.
_DOMAIN = r"(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*(?::[0-9]+)?/)"
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_IMAGE_RE = re.compile(
    rf"^(?P<name>{_DOMAIN}?{_COMPONENT}(?:/{_COMPONENT})*)"
    r"(?::(?P<tag>[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}))?"
    r"(?:@(?P<digest>sha256:[a-f0-9]{64}))?$"
)


def _pinned_image(value: str) -> str:
    match = _IMAGE_RE.match(value)
    if match is None:
        raise ValueError("not an image reference like 'registry/name:tag' or 'name@sha256:<digest>'")
    if match["tag"] is None and match["digest"] is None:
        raise ValueError("image must be pinned with a version tag or a sha256 digest")
    if match["tag"] == "latest" and match["digest"] is None:
        raise ValueError("'latest' is not a pinned version; use a version tag or a digest")
    return value


ImageRef = Annotated[str, AfterValidator(_pinned_image)]


class ConfigModel(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        alias_generator=to_camel,
        populate_by_name=False,
        frozen=True,
    )
