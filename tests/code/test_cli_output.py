"""What the CLI prints off a terminal, and exit codes that tell the kinds of failure apart."""

from __future__ import annotations

import io
from contextlib import redirect_stdout

import pytest
import typer
from rich.table import Table

from models.errors import Blocked, DataProblem, GuardFailed, NotFound
from pipelines.cli import exit_code, reported
from pipelines.output import ExitCode, emit


def test_a_table_off_a_terminal_keeps_every_cell_whole_on_one_line() -> None:
    table = Table("when (UTC)", "action", "reason")
    reason = "the challenger answered 3% of live requests differently from the champion " * 3
    table.add_row("2026-12-01T10:00:00+00:00", "promote", reason.strip())
    buf = io.StringIO()
    with redirect_stdout(buf):
        emit(table)
    row = next(line for line in buf.getvalue().splitlines() if "promote" in line)
    assert "2026-12-01T10:00:00+00:00" in row and reason.strip() in row
    assert "…" not in buf.getvalue()


@pytest.mark.parametrize(
    "exc, code",
    [
        (Blocked("gate"), ExitCode.BLOCKED),
        (DataProblem("schema"), ExitCode.DATA),
        (GuardFailed("parity"), ExitCode.GUARD),
        (NotFound("task"), ExitCode.NOT_FOUND),
        (KeyError("config"), ExitCode.NOT_FOUND),
        (ConnectionRefusedError("registry"), ExitCode.REGISTRY),
        (ValueError("bad value"), ExitCode.ERROR),
    ],
)
def test_each_kind_of_failure_has_its_exit_code(exc: BaseException, code: ExitCode) -> None:
    assert exit_code(exc) is code
    with pytest.raises(typer.Exit) as info:
        with reported():
            raise exc
    assert info.value.exit_code == code


def test_the_concrete_errors_are_of_their_kind() -> None:
    from models.export import ParityError
    from models.onnx_model import ChecksumError
    from models.registry import UnknownTask
    from models.tasks.superres.sources import DoesHarm
    from models.training.loop import TrainingDiverged
    from pipelines.flows import DataValidationError
    from pipelines.ingest import IngestError
    from pipelines.promotion import PromotionBlocked

    assert exit_code(PromotionBlocked([])) is ExitCode.BLOCKED
    for guard in (ParityError("x"), ChecksumError("x"), TrainingDiverged("x"), DoesHarm("x")):
        assert exit_code(guard) is ExitCode.GUARD
    assert exit_code(DataValidationError("t", ["p"])) is ExitCode.DATA and exit_code(IngestError("x")) is ExitCode.DATA
    assert exit_code(UnknownTask("nope")) is ExitCode.NOT_FOUND
    from pipelines.recovery import RetrainRunning

    assert exit_code(RetrainRunning("x")) is ExitCode.BLOCKED


def test_an_unexpected_error_is_not_hidden() -> None:
    with pytest.raises(ZeroDivisionError):
        with reported():
            1 / 0


def test_a_full_disk_is_said_in_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    import errno
    import sqlite3

    from models.errors import out_of_space

    def chained() -> None:
        try:
            raise sqlite3.OperationalError("database or disk is full")
        except sqlite3.OperationalError as exc:
            raise RuntimeError("(sqlite3.OperationalError) could not write the run") from exc

    with pytest.raises(RuntimeError) as info:
        chained()
    assert out_of_space(info.value) and out_of_space(OSError(errno.ENOSPC, "No space left on device"))
    assert not out_of_space(OSError(errno.EACCES, "Permission denied")) and not out_of_space(ValueError("disk"))
    with pytest.raises(typer.Exit) as exited:
        with reported():
            raise OSError(errno.ENOSPC, "No space left on device", "/z/checkpoints/last.ckpt")
    line = capsys.readouterr().err.strip()
    assert exited.value.exit_code == ExitCode.ERROR and "\n" not in line
    assert line.startswith("error: out of disk space") and "free space under ZOO_HOME" in line and "last.ckpt" in line
