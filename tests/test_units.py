"""Every time and size a user sets in days, MB or seconds, checked in literal units.

A constant written in the wrong unit (a "day" of 86,400,000 µs, a MB of 1,000 bytes) passes every
test that expresses its expectations through the same constant: both sides scale together. These
tests write the numbers out, from the units in the docs and the CLI's help.
"""

from __future__ import annotations

from pathlib import Path

from walrelay import wire
from walrelay.archive import archiver, retention
from walrelay.archive.dir_store import DirStore
from walrelay.archive.shipper import ArchiveShipper
from walrelay.cli import build_parser, shipper_settings
from walrelay.primary import PrimaryConfig

PRIMARY = ["primary", "--object", "o", "--replicas", "a:1,b:2,c:3,d:4,e:5", "--listen", "127.0.0.1:0", "--data", "d",
           "--epoch", "1"]  # fmt: skip


def test_the_primary_cli_turns_mb_seconds_and_days_into_bytes_and_microseconds(tmp_path: Path) -> None:
    args = build_parser().parse_args(
        [*PRIMARY, "--segment-mb", "16", "--segment-seconds", "10", "--retention-days", "30"]
    )
    got = shipper_settings(args)
    assert got == {"segment_bytes": 16_777_216, "segment_age_s": 10, "retention_window_us": 2_592_000_000_000}
    assert shipper_settings(build_parser().parse_args(PRIMARY)) == got  # the defaults are 16 MB, 10 s, 30 days
    half = shipper_settings(build_parser().parse_args([*PRIMARY, "--segment-mb", "0.5", "--retention-days", "0.5"]))
    assert (half["segment_bytes"], half["retention_window_us"]) == (524_288, 43_200_000_000)
    shipper = ArchiveShipper(DirStore(str(tmp_path)), "o", **got)
    assert shipper.segment_age_us == 10_000_000 and shipper.retention_window_us == 2_592_000_000_000
    assert build_parser().parse_args(PRIMARY).deadline == 30.0


def test_the_protocol_s_numbers_are_the_code_s() -> None:
    """docs/protocol.md states these in bytes and seconds; the code must say the same."""
    assert wire.DEFAULT_MAX_FRAME == 67_109_888  # 64 MiB + 1024
    cfg = PrimaryConfig(epoch=1)
    assert cfg.max_entry_bytes == 67_108_864  # 64 MiB
    assert cfg.deadline_us == 30_000_000  # 30 s
    assert cfg.retransmit_us == 1_000_000  # 1 s
    assert cfg.max_batch_bytes == 8_388_608  # 8 MiB
    assert cfg.max_retained_bytes == 268_435_456  # 256 MiB
    assert archiver.SEGMENT_BYTES == 16_777_216  # 16 MB (MiB), every 16 MB or every 10 s
    assert archiver.SEGMENT_AGE_US == 10_000_000
    assert retention.DAY_US == 86_400_000_000
    assert retention.DEFAULT_WINDOW_US == 2_592_000_000_000  # 30 days
    assert retention.DEFAULT_GRACE_US == 3_600_000_000  # one hour
