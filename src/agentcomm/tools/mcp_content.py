"""Between agentcomm's content types and MCP content blocks, both ways (internal).

:func:`to_blocks` turns a handler's result (``str``, :class:`Image`, :class:`Audio`,
:class:`Resource`, a :class:`Message` part, or a list mixing them) into MCP content
blocks; :func:`from_block` reads a block back as those types; the prompt and
sampling helpers do the same for messages.
"""

from __future__ import annotations

import base64
from typing import Any

import mcp_types as mt
import msgspec

from agentcomm.core.errors import ValidationError
from agentcomm.tools.content import Audio, Image, Message, Resource

__all__ = [
    "from_block",
    "from_contents",
    "prompt_messages",
    "sampling_messages",
    "to_block",
    "to_blocks",
    "to_contents",
]

_encode = msgspec.json.Encoder().encode


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def to_contents(res: Resource) -> mt.TextResourceContents | mt.BlobResourceContents:
    """A :class:`Resource` as MCP resource contents."""
    if res.blob is not None:
        return mt.BlobResourceContents(uri=res.uri, mime_type=res.mime_type, blob=_b64(res.blob))
    return mt.TextResourceContents(uri=res.uri, mime_type=res.mime_type, text=res.text or "")


def to_block(part: Any) -> mt.ContentBlock:
    """One result part as an MCP content block (JSON text for plain values)."""
    if isinstance(part, str):
        return mt.TextContent(type="text", text=part)
    if isinstance(part, Image):
        return mt.ImageContent(type="image", data=_b64(part.data), mime_type=part.mime_type)
    if isinstance(part, Audio):
        return mt.AudioContent(type="audio", data=_b64(part.data), mime_type=part.mime_type)
    if isinstance(part, Resource):
        return mt.EmbeddedResource(type="resource", resource=to_contents(part))
    return mt.TextContent(type="text", text=_encode(part).decode())


def to_blocks(result: Any) -> list[mt.ContentBlock]:
    """A handler's result as content blocks: a list is mixed content, one block per item."""
    if isinstance(result, list | tuple):
        return [to_block(p) for p in result]
    return [to_block(result)]


def from_contents(c: Any) -> Resource:
    """MCP resource contents as a :class:`Resource` (a blob decoded to bytes)."""
    if isinstance(c, mt.BlobResourceContents):
        return Resource(uri=str(c.uri), blob=base64.b64decode(c.blob), mime_type=c.mime_type)
    return Resource(uri=str(c.uri), text=c.text, mime_type=c.mime_type)


def from_block(block: Any) -> Any:
    """An MCP content block as ``str``, :class:`Image`, :class:`Audio` or :class:`Resource`.

    Other blocks (resource links...) come back as their JSON dict.
    """
    if isinstance(block, mt.TextContent):
        return block.text
    if isinstance(block, mt.ImageContent):
        return Image(base64.b64decode(block.data), block.mime_type)
    if isinstance(block, mt.AudioContent):
        return Audio(base64.b64decode(block.data), block.mime_type)
    if isinstance(block, mt.EmbeddedResource):
        return from_contents(block.resource)
    return block.model_dump(mode="json", by_alias=True, exclude_none=True)


def _as_messages(result: Any) -> list[Message]:
    items = result if isinstance(result, list | tuple) else [result]
    out: list[Message] = []
    for item in items:
        if isinstance(item, Message):
            out.append(item)
        elif isinstance(item, str | Image | Audio | Resource):
            out.append(Message("user", item))
        else:
            raise ValidationError(
                f"a prompt returns str, Message or content parts, got {type(item).__name__}"
            )
    return out


def prompt_messages(result: Any) -> list[mt.PromptMessage]:
    """A prompt function's result (``str``, :class:`Message`, or a list) as MCP messages."""
    return [
        mt.PromptMessage(role=m.role, content=to_block(m.content)) for m in _as_messages(result)
    ]


def sampling_messages(messages: Any) -> list[mt.SamplingMessage]:
    """What ``ctx.sample`` was given as MCP sampling messages (text, image or audio)."""
    out: list[mt.SamplingMessage] = []
    for m in _as_messages(messages):
        block = to_block(m.content)
        if not isinstance(block, mt.TextContent | mt.ImageContent | mt.AudioContent):
            # sampling takes no resources: their text goes inline
            block = mt.TextContent(type="text", text=getattr(m.content, "text", None) or "")
        out.append(mt.SamplingMessage(role=m.role, content=block))
    return out
