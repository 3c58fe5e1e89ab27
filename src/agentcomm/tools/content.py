"""Rich results and prompt messages: images, audio, embedded resources (no MCP import).

A handler may return one of these (or a list mixing them with ``str``) and an MCP
client receives the matching content blocks; a tool of a connected MCP server that
answers with such blocks is read back as these types. They are ordinary payload
types too: tagged structs (``{"type": "image", ...}``) whose bytes travel as base64.

Example::

    @agent.handler
    async def chart(region: str) -> list[str | Image]:
        return [f"sales in {region}:", Image(png_bytes, "image/png")]
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec

__all__ = ["CONTENT_TYPES", "Audio", "Image", "Message", "Resource", "is_content_type"]


class Image(msgspec.Struct, frozen=True, tag_field="type", tag="image"):
    """An image result or prompt part: raw bytes and their MIME type.

    Example::

        return Image(open("chart.png", "rb").read(), "image/png")
    """

    data: bytes
    mime_type: str = "image/png"


class Audio(msgspec.Struct, frozen=True, tag_field="type", tag="audio"):
    """An audio result or prompt part: raw bytes and their MIME type.

    Example::

        return Audio(wav_bytes, "audio/wav")
    """

    data: bytes
    mime_type: str = "audio/wav"


class Resource(msgspec.Struct, frozen=True, kw_only=True, tag_field="type", tag="resource"):
    """A resource's contents: ``text`` or binary ``blob`` under a ``uri``.

    Returned by a handler it is an embedded resource; :meth:`MCPConnection.read_resource`
    returns these for a remote server's resources.

    Example::

        return Resource(uri="board://plan.goal", text='{"goal": "ship"}',
                        mime_type="application/json")
    """

    uri: str
    text: str | None = None
    blob: bytes | None = None
    mime_type: str | None = None

    def __post_init__(self) -> None:
        if (self.text is None) == (self.blob is None):
            raise ValueError("a Resource has exactly one of text= or blob=")


class Message(msgspec.Struct, frozen=True):
    """One message of a prompt or of a sampling request: a role and its content.

    Example::

        @agent.prompt
        def review(code: str) -> list[Message]:
            return [Message("user", f"Review this:\\n{code}"), Message("assistant", "Sure.")]
    """

    role: Literal["user", "assistant"]
    content: str | Image | Audio | Resource


#: The content types a result may be made of (besides ``str``).
CONTENT_TYPES: tuple[type, ...] = (Image, Audio, Resource)


def is_content_type(tp: Any) -> bool:
    """True when a return annotation is (or mixes in) a content type: MCP content, not JSON.

    Example::

        assert is_content_type(list[str | Image]) and not is_content_type(int)
    """
    import typing

    if isinstance(tp, type) and issubclass(tp, CONTENT_TYPES):
        return True
    return any(is_content_type(a) for a in typing.get_args(tp))
