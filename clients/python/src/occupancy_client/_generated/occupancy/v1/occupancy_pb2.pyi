from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable
from typing import ClassVar as _ClassVar, Optional as _Optional

DESCRIPTOR: _descriptor.FileDescriptor

class IsOccupiedRequest(_message.Message):
    __slots__ = ("channel",)
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    channel: str
    def __init__(self, channel: _Optional[str] = ...) -> None: ...

class IsOccupiedResponse(_message.Message):
    __slots__ = ("occupied",)
    OCCUPIED_FIELD_NUMBER: _ClassVar[int]
    occupied: bool
    def __init__(self, occupied: bool = ...) -> None: ...

class PublishIfOccupiedRequest(_message.Message):
    __slots__ = ("channels", "event", "data", "socket_id")
    CHANNELS_FIELD_NUMBER: _ClassVar[int]
    EVENT_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    SOCKET_ID_FIELD_NUMBER: _ClassVar[int]
    channels: _containers.RepeatedScalarFieldContainer[str]
    event: str
    data: str
    socket_id: str
    def __init__(self, channels: _Optional[_Iterable[str]] = ..., event: _Optional[str] = ..., data: _Optional[str] = ..., socket_id: _Optional[str] = ...) -> None: ...

class PublishIfOccupiedResponse(_message.Message):
    __slots__ = ("published", "skipped")
    PUBLISHED_FIELD_NUMBER: _ClassVar[int]
    SKIPPED_FIELD_NUMBER: _ClassVar[int]
    published: _containers.RepeatedScalarFieldContainer[str]
    skipped: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, published: _Optional[_Iterable[str]] = ..., skipped: _Optional[_Iterable[str]] = ...) -> None: ...
