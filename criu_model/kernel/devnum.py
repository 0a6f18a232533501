"""Device numbers as /proc prints them, and the names of tty devices.

/proc/PID/stat prints the controlling tty as new_encode_dev() of its device
(include/linux/kdev_t.h): 12 bits of major, 20 of minor, the minor's low
byte lowest so small numbers read like the old 16-bit encoding.
"""

from __future__ import annotations

# include/uapi/linux/major.h
TTY_MAJOR = 4                  # minors 0-63 virtual consoles, 64+ serial
UNIX98_PTY_SLAVE_MAJOR = 136   # 136..143, 256 ptys each
UNIX98_PTY_MAJOR_COUNT = 8
UNIX98_PTY_MINORS = 256
VT_MINORS = 64


def encode_dev(major: int, minor: int) -> int:
    """new_encode_dev(): the numbering of stat's tty_nr."""
    return (minor & 0xFF) | (major << 8) | ((minor & ~0xFF) << 12)


def decode_dev(nr: int) -> tuple[int, int]:
    return (nr >> 8) & 0xFFF, (nr & 0xFF) | ((nr >> 12) & 0xFFF00)


def pts_device(index: int) -> int:
    """Device of /dev/pts/INDEX, encoded."""
    return encode_dev(UNIX98_PTY_SLAVE_MAJOR + index // UNIX98_PTY_MINORS,
                      index % UNIX98_PTY_MINORS)


def tty_name(nr: int) -> str:
    """ps-style name of an encoded tty device: pts/3, tty1, ttyS0, or MAJOR:MINOR."""
    major, minor = decode_dev(nr)
    if UNIX98_PTY_SLAVE_MAJOR <= major < UNIX98_PTY_SLAVE_MAJOR + UNIX98_PTY_MAJOR_COUNT:
        return f"pts/{(major - UNIX98_PTY_SLAVE_MAJOR) * UNIX98_PTY_MINORS + minor}"
    if major == TTY_MAJOR:
        return f"tty{minor}" if minor < VT_MINORS else f"ttyS{minor - VT_MINORS}"
    return f"{major}:{minor}"
