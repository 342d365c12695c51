"""The embedded PPG in a process of its own (`sip.ppg_process`, the default under `openscws up`).

The parent starts `python -m openscws.aio.ppg_process` and writes the PPG's configuration,
secrets included, as one JSON line on the child's standard input: secrets never reach a command
line or a file. The child starts the PPG and answers with one JSON line on its standard output,
`{"pap_url": ..., "sip_port": ...}` or `{"error": ...}`. It then serves until its standard input
closes (the parent stopped, or died) or it gets SIGTERM; SIGINT is left to the parent, which
stops it in order. Its log lines go to the parent's standard error in the same format.

The parent restarts a child that dies, on the same PAP and SIP ports. Delivery state and the
registrar's bindings live in the PPG's database, so a restart loses neither: pushes in flight are
taken up again once their lease expires, as after any PPG crash.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
import urllib.parse
from dataclasses import asdict, replace
from typing import Any, Final

from openscws.aio.ppg import Ppg, PpgConfig
from openscws.config import ENV_PREFIX
from openscws.push.ppg import DeliveryPolicy, Initiator

__all__ = ["PpgProcess", "config_from_wire", "config_to_wire", "start_ppg_process"]

log = logging.getLogger(__name__)

READY_WAIT: Final = 60.0
"""Seconds for a child to start (the interpreter, its imports, the database)."""
STOP_WAIT: Final = 15.0
"""Seconds for a child to stop in order once its standard input is closed."""
RESTART_BACKOFF: Final = (1.0, 30.0)
"""First and longest wait before starting a child that died again; doubled each time."""
LOG_FORMAT: Final = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"


def config_to_wire(config: PpgConfig) -> dict[str, Any]:
    """`config` as JSON values (the child's standard input only: it holds secrets)."""
    wire = asdict(config)
    wire["initiators"] = [[i.name, i.secret] for i in config.initiators]
    return wire


def config_from_wire(wire: dict[str, Any]) -> PpgConfig:
    """The inverse of `config_to_wire`; ValueError for anything else."""
    try:
        fields = dict(wire)
        fields["initiators"] = tuple(Initiator(str(n), str(s)) for n, s in wire["initiators"])
        fields["policy"] = DeliveryPolicy(**wire["policy"])
        fields["registrar_users"] = {str(k): str(v) for k, v in wire["registrar_users"].items()}
        return PpgConfig(**fields)
    except (KeyError, TypeError, AttributeError) as e:
        raise ValueError(f"PPG configuration: {e}") from None


class PpgProcess:
    """The parent's handle on the PPG child: its URLs and ports, and its supervision."""

    def __init__(self, config: PpgConfig) -> None:
        self.config = config
        self.pap_url = ""
        self.sip_port = 0
        self.restarts = 0
        self._proc: asyncio.subprocess.Process | None = None
        self._watcher: asyncio.Task[None] | None = None
        self._closing = False
        self._started = 0.0

    @property
    def pid(self) -> int:
        assert self._proc is not None
        return self._proc.pid

    async def start(self) -> None:
        await self._spawn()
        # The same ports on a restart: push clients registered with this SIP port and the
        # admin server posts PAP to this URL.
        pap_port = urllib.parse.urlsplit(self.pap_url).port or self.config.pap_port
        self.config = replace(self.config, sip_port=self.sip_port, pap_port=pap_port)
        self._watcher = asyncio.create_task(self._watch())

    async def _spawn(self) -> None:
        """One child, started and ready; OSError saying why when it is not."""
        # -P: nothing from the working directory shadows a module in a process that holds
        # every secret; the environment without this project's settings (they came here).
        env = {k: v for k, v in os.environ.items() if not k.startswith(ENV_PREFIX)}
        proc = await asyncio.create_subprocess_exec(
            *(sys.executable, "-P", "-m", __name__),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            env=env,
        )
        try:
            ready = _ready(await self._hand_over(proc))
        except BaseException:  # cancelled by close(), or not ready: no child left behind
            await _stop(proc)
            raise
        self._proc = proc
        self._started = asyncio.get_running_loop().time()
        self.pap_url, self.sip_port = ready
        log.info("PPG process %d: PAP on %s, SIP on port %d", proc.pid, self.pap_url, self.sip_port)

    async def _hand_over(self, proc: asyncio.subprocess.Process) -> bytes:
        """Writes the start line; the child's answer line."""
        assert proc.stdin is not None
        assert proc.stdout is not None
        level = logging.getLogger().getEffectiveLevel()
        line = json.dumps({"config": config_to_wire(self.config), "log_level": level})
        try:
            async with asyncio.timeout(READY_WAIT):
                proc.stdin.write(line.encode() + b"\n")
                await proc.stdin.drain()
                answer = await proc.stdout.readline()
        except TimeoutError:
            raise OSError(f"the PPG process did not answer in {READY_WAIT:.0f} s") from None
        except (OSError, ValueError):  # its pipe closed, or an answer line without end
            answer = b""
        if not answer:
            raise OSError("the PPG process ended before it was ready")
        return answer

    async def _watch(self) -> None:
        wait = RESTART_BACKOFF[0]
        while True:
            assert self._proc is not None
            code = await self._proc.wait()
            if self._closing:
                return
            if code == 0:  # it stops in order only when told to (SIGTERM to the group)
                log.warning("PPG process %d stopped; not restarted", self._proc.pid)
                return
            if asyncio.get_running_loop().time() - self._started > RESTART_BACKOFF[1]:
                wait = RESTART_BACKOFF[0]  # it had been running well: not a crash loop
            log.error("PPG process %d %s; restarting it", self._proc.pid, _how_it_ended(code))
            while True:
                await asyncio.sleep(wait)
                wait = min(wait * 2, RESTART_BACKOFF[1])
                try:
                    await self._spawn()
                except Exception as e:  # noqa: BLE001 (whatever it was, supervision goes on)
                    log.error("%s; trying again in %.0f s", e, wait)
                    continue
                self.restarts += 1
                break

    async def close(self) -> None:
        self._closing = True
        try:
            if self._watcher is not None:
                self._watcher.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._watcher
        finally:
            if self._proc is not None:
                await _stop(self._proc)


def _ready(answer: bytes) -> tuple[str, int]:
    """(PAP URL, SIP port) from the child's answer line; OSError for its error or anything
    else."""
    try:
        ready = json.loads(answer)
    except ValueError:
        ready = None
    if isinstance(ready, dict) and isinstance(ready.get("error"), str):
        raise OSError(f"the PPG process did not start: {ready['error']}")
    if (
        not isinstance(ready, dict)
        or not isinstance(ready.get("pap_url"), str)
        or not isinstance(ready.get("sip_port"), int)
    ):
        raise OSError(f"the PPG process answered {answer[:80]!r}")
    return ready["pap_url"], ready["sip_port"]


def _how_it_ended(code: int) -> str:
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"was killed by {signal.Signals(-code).name}"
    return f"exited with status {code}"


async def _stop(proc: asyncio.subprocess.Process) -> None:
    """Closes the child's standard input (it stops in order), then SIGTERM, then SIGKILL."""
    if proc.stdin is not None:
        proc.stdin.close()
    for signum in (None, signal.SIGTERM, signal.SIGKILL):
        if signum is not None and proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signum)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(STOP_WAIT):
                await proc.wait()
                return


async def start_ppg_process(config: PpgConfig) -> PpgProcess:
    """A running PPG child for `config`, supervised until `close()`."""
    ppg = PpgProcess(config)
    await ppg.start()
    return ppg


# -- the child ---------------------------------------------------------------------------------


def _answer(message: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


async def _child(config: PpgConfig) -> int:
    from openscws.aio.heap import settle_heap

    ppg = Ppg(config)
    try:
        await ppg.start()
    except OSError as e:
        ppg.store.close()
        _answer({"error": f"cannot listen: {e}"})
        return 2
    try:
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        # The parent's end of the pipe closing is the signal to stop, whatever happened to it.
        reader = asyncio.StreamReader()
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
        _answer({"pap_url": ppg.pap_url, "sip_port": ppg.sip.port})
        settle_heap()
        eof = asyncio.create_task(reader.read())
        stopped = asyncio.create_task(stop.wait())
        await asyncio.wait((eof, stopped), return_when=asyncio.FIRST_COMPLETED)
        eof.cancel()
        stopped.cancel()
    finally:
        await ppg.close()
    return 0


def main() -> int:
    """`python -m openscws.aio.ppg_process`: the child side (started by `PpgProcess`)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        # The parent writes this one line and nothing more, so the buffered read takes
        # nothing that the pipe reader of `_child` (which waits for the end) should see.
        start = json.loads(sys.stdin.buffer.readline())
        config = config_from_wire(start["config"])
        level = int(start.get("log_level", logging.WARNING))
    except (ValueError, KeyError, TypeError) as e:
        _answer({"error": f"bad start line: {e}"})
        return 2
    logging.basicConfig(level=level, format=LOG_FORMAT, stream=sys.stderr)
    for name in ("alembic",):
        logging.getLogger(name).setLevel(max(level, logging.WARNING))
    try:
        return asyncio.run(_child(config))
    except Exception as e:  # the parent logs it and restarts the child
        log.exception("PPG process %d: %s", os.getpid(), e)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
