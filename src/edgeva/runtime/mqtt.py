"""One MQTT connection per process (paho-mqtt): availability with a last will, and a bounded
outbox that never blocks the caller.

``<prefix>/<name>/available`` carries ``online`` (retained, on connect) and ``offline``
(retained: published on a clean stop, and by the broker as the last will when the process
dies or goes silent for 1.5 keep-alive periods), Frigate's availability convention per node.
Messages are put on a bounded queue and published by a thread while the broker is
connected; while it is not (down, unreachable, restarting) they wait there, and once the
queue is full new ones are dropped and counted (``edgeva_mqtt_messages_dropped_total``).
Inference never waits for the broker. paho reconnects in the background on its own.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
import uuid

import paho.mqtt.client as mqtt

from edgeva.runtime import metrics
from edgeva.runtime.opsconfig import MqttConfig

__all__ = ["Publisher"]

log = logging.getLogger(__name__)


class Publisher:
    """A process's MQTT client.

    Args:
        settings: the cluster's ``mqtt`` section.
        name: the node or camera this process is (``cloud``, ``edge-1``, ``camera-2``).
    """

    def __init__(self, settings: MqttConfig, name: str):
        self.settings, self.name = settings, name
        self.availability = f"{settings.topic_prefix}/{name}/available"
        self._client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2,
                                   client_id=f"edgeva-{name}-{os.getpid()}-{uuid.uuid4().hex[:6]}")
        self._client.will_set(self.availability, "offline", qos=settings.qos, retain=True)
        if settings.username:
            self._client.username_pw_set(settings.username, settings.password())
        self._client.reconnect_delay_set(1, 30)
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_connect_fail = self._on_connect_fail
        self._outbox: queue.Queue = queue.Queue(maxsize=settings.queue_size)
        self._connected = threading.Event()
        self._stopping = threading.Event()
        self._warned = False
        self._thread = threading.Thread(target=self._drain, name=f"mqtt-{name}", daemon=True)
        metrics.EVENTS_QUEUE.labels(name).set_function(self._outbox.qsize)

    # -- connection -------------------------------------------------------------------------
    def start(self) -> Publisher:
        """Connect in the background (never blocks; an unreachable broker is logged once)."""
        try:
            self._client.connect_async(self.settings.host, self.settings.port, keepalive=self.settings.keepalive_s)
        except (OSError, ValueError) as exc:  # e.g. a host name that does not resolve
            self._warn(str(exc))
        self._client.loop_start()
        self._thread.start()
        return self

    def _warn(self, reason: str) -> None:
        if not self._warned:
            self._warned = True
            log.warning("mqtt: broker %s:%d unreachable (%s); %s keeps running, up to %d messages wait and "
                        "further ones are dropped until it is back", self.settings.host, self.settings.port, reason,
                        self.name, self.settings.queue_size)

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            self._warn(f"connection refused: {reason_code}")
            return
        client.publish(self.availability, "online", qos=self.settings.qos, retain=True)
        metrics.event_published(self.name, "availability")
        if self._warned:
            log.info("mqtt: connected to %s:%d", self.settings.host, self.settings.port)
        self._connected.set()

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        self._connected.clear()

    def _on_connect_fail(self, client, userdata) -> None:
        self._warn("connection failed")

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    # -- publishing --------------------------------------------------------------------------
    def publish(self, topic: str, payload: bytes | str, *, kind: str, retain: bool = False) -> bool:
        """Queue a message; False (and counted) when the outbox is full."""
        try:
            self._outbox.put_nowait((topic, payload, kind, retain))
            return True
        except queue.Full:
            metrics.event_dropped(self.name, kind)
            return False

    def _drain(self) -> None:
        while True:
            try:
                topic, payload, kind, retain = self._outbox.get(timeout=0.2)
            except queue.Empty:
                if self._stopping.is_set():
                    return
                continue
            while not self._connected.wait(0.2):
                if self._stopping.is_set():
                    metrics.event_dropped(self.name, kind)
                    break
            else:
                info = self._client.publish(topic, payload, qos=self.settings.qos, retain=retain)
                if info.rc == mqtt.MQTT_ERR_SUCCESS:
                    metrics.event_published(self.name, kind)
                else:
                    metrics.event_dropped(self.name, kind)
            self._outbox.task_done()

    def close(self, timeout: float = 5.0) -> None:
        """Publish what waits (up to ``timeout`` seconds), say ``offline``, disconnect."""
        deadline = time.monotonic() + timeout
        while self._outbox.unfinished_tasks and self.connected and time.monotonic() < deadline:
            time.sleep(0.05)
        self._stopping.set()
        if self.connected:
            info = self._client.publish(self.availability, "offline", qos=self.settings.qos, retain=True)
            try:
                info.wait_for_publish(timeout=min(timeout, 2.0))
                metrics.event_published(self.name, "availability")
            except (RuntimeError, ValueError):  # disconnected meanwhile: the broker sends the will
                pass
        self._client.disconnect()
        self._client.loop_stop()
        self._thread.join(1.0)
