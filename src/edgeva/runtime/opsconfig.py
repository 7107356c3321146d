"""Configuration sections for operating a cluster: ``metrics``, ``mqtt`` and ``dashboard``.

Kept apart from :mod:`.config` (which includes them in :class:`~.config.ClusterConfig`) so
the operations features evolve without touching the topology's models. Every section is
off by default: the embedded defaults (SQLite, no broker, no web server) stay the defaults.
"""

from __future__ import annotations

import os

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from edgeva.models.detections import COCO_NAMES

__all__ = ["MetricsConfig", "MqttConfig", "DashboardConfig"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class MetricsConfig(_Strict):
    enabled: bool = False  # every node and camera serves /metrics (Prometheus text format) on its metrics_port
    listen: str | None = None  # bind address of /metrics; default: a node's listen/host, a camera 127.0.0.1
    linger_s: float = Field(0.0, ge=0)  # a camera keeps /metrics up this long after its source ended (last scrape)


class MqttConfig(_Strict):
    enabled: bool = False  # publish object events and availability to an MQTT broker
    host: str = "127.0.0.1"  # broker address
    port: int = Field(1883, ge=1, le=65535)
    topic_prefix: str = "edgeva"  # topics: <prefix>/events, <prefix>/<camera>/<label>/snapshot, <prefix>/<node>/available
    username: str | None = None
    password_env: str | None = None  # environment variable holding the broker password
    keepalive_s: int = Field(10, ge=5)  # the broker publishes a node's last will after 1.5x this of silence
    qos: int = Field(1, ge=0, le=1)  # QoS of events and availability
    queue_size: int = Field(1000, ge=1)  # messages waiting for the broker; more are dropped (and counted)
    track: list[str] | None = None  # labels that raise object events (COCO names); None: every label
    min_score: float = Field(0.5, gt=0, le=1)  # detections below this are ignored by the tracker
    min_frames: int = Field(2, ge=1)  # inferred frames an object must be seen in before its `new` event
    max_missing: int = Field(3, ge=1)  # inferred frames without it before its `end` event
    iou: float = Field(0.3, gt=0, le=1)  # box overlap that continues an object from one inferred frame to the next
    snapshots: bool = True  # a JPEG with the object's box on <prefix>/<camera>/<label>/snapshot at `new`

    @field_validator("track")
    @classmethod
    def _labels(cls, labels: list[str] | None) -> list[str] | None:
        for label in labels or []:
            if label not in COCO_NAMES:
                raise ValueError(f"unknown label {label!r} (labels are COCO names, e.g. person, car, bottle)")
        return labels

    @field_validator("topic_prefix")
    @classmethod
    def _prefix(cls, prefix: str) -> str:
        if not prefix or any(c in prefix for c in "#+") or prefix.startswith("/") or prefix.endswith("/"):
            raise ValueError(f"topic_prefix {prefix!r}: non-empty, no wildcards, no leading or trailing /")
        return prefix

    @model_validator(mode="after")
    def _password(self) -> MqttConfig:
        if self.password_env is not None and self.password_env not in os.environ:
            raise ValueError(f"password_env: environment variable {self.password_env} is not set")
        return self

    def password(self) -> str | None:
        return os.environ[self.password_env] if self.password_env else None


class DashboardConfig(_Strict):
    enabled: bool = False  # the cloud node serves the dashboard (page at /, JSON at /api/stats)
    listen: str | None = None  # bind address; default: the cloud's listen/host
    port: int = Field(0, ge=0, le=65535)  # 0: `edgeva cluster` picks a free port
    refresh_s: float = Field(1.0, gt=0)  # how often the page and the live view refresh
