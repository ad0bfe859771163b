from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class IsOccupiedRequest(_message.Message):
    __slots__ = ("channel", "app_id")
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    APP_ID_FIELD_NUMBER: _ClassVar[int]
    channel: str
    app_id: str
    def __init__(self, channel: _Optional[str] = ..., app_id: _Optional[str] = ...) -> None: ...

class IsOccupiedResponse(_message.Message):
    __slots__ = ("occupied",)
    OCCUPIED_FIELD_NUMBER: _ClassVar[int]
    occupied: bool
    def __init__(self, occupied: bool = ...) -> None: ...

class PublishIfOccupiedRequest(_message.Message):
    __slots__ = ("channels", "event", "data", "socket_id", "app_id", "coalesce_ms")
    CHANNELS_FIELD_NUMBER: _ClassVar[int]
    EVENT_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    SOCKET_ID_FIELD_NUMBER: _ClassVar[int]
    APP_ID_FIELD_NUMBER: _ClassVar[int]
    COALESCE_MS_FIELD_NUMBER: _ClassVar[int]
    channels: _containers.RepeatedScalarFieldContainer[str]
    event: str
    data: str
    socket_id: str
    app_id: str
    coalesce_ms: int
    def __init__(self, channels: _Optional[_Iterable[str]] = ..., event: _Optional[str] = ..., data: _Optional[str] = ..., socket_id: _Optional[str] = ..., app_id: _Optional[str] = ..., coalesce_ms: _Optional[int] = ...) -> None: ...

class PublishIfOccupiedResponse(_message.Message):
    __slots__ = ("published", "skipped", "deferred", "superseded", "store_unavailable")
    PUBLISHED_FIELD_NUMBER: _ClassVar[int]
    SKIPPED_FIELD_NUMBER: _ClassVar[int]
    DEFERRED_FIELD_NUMBER: _ClassVar[int]
    SUPERSEDED_FIELD_NUMBER: _ClassVar[int]
    STORE_UNAVAILABLE_FIELD_NUMBER: _ClassVar[int]
    published: _containers.RepeatedScalarFieldContainer[str]
    skipped: _containers.RepeatedScalarFieldContainer[str]
    deferred: _containers.RepeatedScalarFieldContainer[str]
    superseded: int
    store_unavailable: bool
    def __init__(self, published: _Optional[_Iterable[str]] = ..., skipped: _Optional[_Iterable[str]] = ..., deferred: _Optional[_Iterable[str]] = ..., superseded: _Optional[int] = ..., store_unavailable: bool = ...) -> None: ...

class WatchOccupancyRequest(_message.Message):
    __slots__ = ("app_id", "channel_prefix")
    APP_ID_FIELD_NUMBER: _ClassVar[int]
    CHANNEL_PREFIX_FIELD_NUMBER: _ClassVar[int]
    app_id: str
    channel_prefix: str
    def __init__(self, app_id: _Optional[str] = ..., channel_prefix: _Optional[str] = ...) -> None: ...

class WatchOccupancyResponse(_message.Message):
    __slots__ = ("kind", "occupied", "vacated")
    class Kind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        KIND_UNSPECIFIED: _ClassVar[WatchOccupancyResponse.Kind]
        KIND_RESET: _ClassVar[WatchOccupancyResponse.Kind]
        KIND_SNAPSHOT: _ClassVar[WatchOccupancyResponse.Kind]
        KIND_SYNCED: _ClassVar[WatchOccupancyResponse.Kind]
        KIND_CHANGE: _ClassVar[WatchOccupancyResponse.Kind]
    KIND_UNSPECIFIED: WatchOccupancyResponse.Kind
    KIND_RESET: WatchOccupancyResponse.Kind
    KIND_SNAPSHOT: WatchOccupancyResponse.Kind
    KIND_SYNCED: WatchOccupancyResponse.Kind
    KIND_CHANGE: WatchOccupancyResponse.Kind
    KIND_FIELD_NUMBER: _ClassVar[int]
    OCCUPIED_FIELD_NUMBER: _ClassVar[int]
    VACATED_FIELD_NUMBER: _ClassVar[int]
    kind: WatchOccupancyResponse.Kind
    occupied: _containers.RepeatedScalarFieldContainer[str]
    vacated: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, kind: _Optional[_Union[WatchOccupancyResponse.Kind, str]] = ..., occupied: _Optional[_Iterable[str]] = ..., vacated: _Optional[_Iterable[str]] = ...) -> None: ...
