"""One progress indicator for the CLI's slow steps, on stderr only.

The Python API tells ``Options.progress(message)`` when a slow step starts (a first-seen model's inventory,
a build on the meta device, a calibration from the model's code, a simulation on fake tensors); ``hfmem search``
tells how many models of a Hub scan it has judged. ``Indicator`` turns those calls into one spinner line on
stderr (a transient rich ``Live``: it leaves nothing behind), and

* only when stderr is a terminal and ``--quiet`` was not given: in a pipe, a log file or CI it stays silent,
  so stderr carries only hints and errors;
* only once the wait has lasted ``HFMEM_PROGRESS_DELAY`` seconds (default 1): an answer that comes quickly
  never flickers a spinner. ``HFMEM_PROGRESS_DELAY=0`` shows it at once (the tests use it);
* never over the answer: every write to stdout, every hint line and every error line goes through
  ``hfmem.cli.output``, which calls ``stop_all()`` first, so the spinner is stopped and its line cleared
  before anything else is printed.

The module imports nothing heavy; rich is imported only when the spinner is really shown.
"""

from __future__ import annotations

import os
import sys
import threading

DEFAULT_DELAY_S = 1.0
_ACTIVE: list["Indicator"] = []
_LOCK = threading.Lock()


def delay_s() -> float:
    """The wait before the indicator appears: ``HFMEM_PROGRESS_DELAY`` seconds, else 1 (a bad value: 1)."""
    try:
        value = float(os.environ.get("HFMEM_PROGRESS_DELAY", DEFAULT_DELAY_S))
    except ValueError:
        return DEFAULT_DELAY_S
    return value if value >= 0 else DEFAULT_DELAY_S


def enabled(quiet: bool, stream=None) -> bool:
    """Whether an indicator may be shown: not ``--quiet`` and ``stream`` (default stderr) a terminal."""
    stream = sys.stderr if stream is None else stream
    try:
        return not quiet and stream.isatty()
    except (AttributeError, ValueError):  # a closed or replaced stream
        return False


class Indicator:
    """A spinner with a message, shown ``delay`` seconds after the first ``__call__`` (see the module
    docstring). ``console`` (a rich Console) is for tests; by default one on stderr is made when shown."""

    def __init__(self, *, delay: float | None = None, console=None):
        self.delay = delay_s() if delay is None else delay
        self._console = console
        self._message = ""
        self._status = None
        self._spinner = None
        self._timer: threading.Timer | None = None
        self._lock = threading.Lock()
        self._stopped = False

    # -- the callbacks the API is given ------------------------------------------------------------------
    def __call__(self, message: str) -> None:
        """A slow step starts: ``message`` says which (``Options.progress``)."""
        with self._lock:
            self._message = message
            self._stopped = False
            if self._status is not None:
                self._spinner.update(text=self._text())
                return
            if self._timer is None:
                with _LOCK:
                    if self not in _ACTIVE:
                        _ACTIVE.append(self)
                if self.delay <= 0:
                    self._show_locked()
                    return
                self._timer = threading.Timer(self.delay, self._show)
                self._timer.daemon = True
                self._timer.start()

    def count(self, done: int, total: int, what: str) -> None:
        """A scan's progress (``api.search``'s ``progress(done, total, model)``)."""
        self(f"judged {done}/{total}: {what}")

    # -- showing and clearing ----------------------------------------------------------------------------
    def _text(self):
        """The message as a rich ``Text``."""
        from rich.text import Text

        # one line: a long message (a path) is cut with an ellipsis rather than wrapped
        return Text(f"{self._message} …", style="dim", no_wrap=True, overflow="ellipsis")

    def _show(self) -> None:
        with self._lock:
            self._show_locked()

    def _show_locked(self) -> None:
        self._timer = None
        if self._stopped or self._status is not None:
            return
        from rich.console import Console
        from rich.live import Live
        from rich.spinner import Spinner

        console = self._console or Console(file=sys.stderr, highlight=False)
        self._spinner = Spinner("dots", self._text())
        spinner = self._spinner

        class _OneLine:  # the spinner's frame and message on one line, cut to the width (never wrapped)
            def __rich_console__(self, console, options):
                line = spinner.render(console.get_time())
                line.no_wrap, line.overflow = True, "ellipsis"
                yield line

        # stdout is never redirected (it may be a pipe that must get the answer's bytes only); a line written
        # to stderr while the spinner shows (a note, an error from the command's boundary) is printed above it.
        self._status = Live(_OneLine(), console=console, transient=True, refresh_per_second=12.5,
                            redirect_stdout=False, redirect_stderr=True)
        self._status.start()
        _at_exit()

    @property
    def shown(self) -> bool:
        return self._status is not None

    def stop(self) -> None:
        """Cancel a pending indicator and clear a shown one (its line is erased: rich's transient Live)."""
        with self._lock:
            self._stopped = True
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            if self._status is not None:
                self._status.stop()
                self._status = None
                self._spinner = None
        with _LOCK:
            if self in _ACTIVE:
                _ACTIVE.remove(self)


def indicator(quiet: bool = False) -> Indicator | None:
    """The ``Options.progress`` callback for a command: an ``Indicator`` where one may be shown, else None."""
    return Indicator() if enabled(quiet) else None


_EXIT_HOOKED: list[bool] = []


def _at_exit() -> None:
    """Clear a spinner still shown when the interpreter exits (a command that printed nothing)."""
    if not _EXIT_HOOKED:
        import atexit

        atexit.register(stop_all)
        _EXIT_HOOKED.append(True)


def stop_all() -> None:
    """Stop every indicator: called before anything is written to stdout or stderr."""
    with _LOCK:
        active = list(_ACTIVE)
    for ind in active:
        ind.stop()
