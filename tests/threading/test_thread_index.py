import base64
from datetime import UTC, datetime, timedelta

from maildesk.threading import child_thread_index, new_thread_index, thread_index_root
from maildesk.threading.thread_index import filetime, thread_index_depth, thread_index_time

NOW = datetime(2026, 11, 22, 14, 0, 0, tzinfo=UTC)
GUID = bytes(range(16))


def test_filetime_epoch():
    assert filetime(datetime(1601, 1, 1, tzinfo=UTC)) == 0
    assert filetime(datetime(1970, 1, 1, tzinfo=UTC)) == 116_444_736_000_000_000


def test_new_thread_index_layout():
    value = new_thread_index(NOW, GUID)
    raw = base64.b64decode(value)
    assert len(raw) == 22
    assert raw[0] == 0x01
    assert int.from_bytes(raw[1:6], "big") == filetime(NOW) >> 24
    assert raw[6:] == GUID
    assert thread_index_root(value) == value
    assert thread_index_depth(value) == 0
    assert abs(thread_index_time(value) - NOW) < timedelta(seconds=2)


def test_children_keep_the_root_and_grow_by_five_bytes():
    root = new_thread_index(NOW, GUID)
    child = child_thread_index(root, NOW + timedelta(hours=1))
    grandchild = child_thread_index(child, NOW + timedelta(days=3))
    assert len(base64.b64decode(child)) == 27
    assert len(base64.b64decode(grandchild)) == 32
    assert thread_index_root(child) == thread_index_root(grandchild) == root
    assert thread_index_depth(grandchild) == 2


def test_child_time_delta_encoding():
    root = new_thread_index(NOW, GUID)
    later = NOW + timedelta(hours=1)
    block = base64.b64decode(child_thread_index(root, later))[22:]
    word = int.from_bytes(block[:4], "big")
    assert word >> 31 == 0  # DC=0 for short deltas
    header_ticks = (filetime(NOW) >> 24) << 24
    assert word & 0x7FFF_FFFF == ((filetime(later) - header_ticks) >> 18) & 0x7FFF_FFFF
    far = base64.b64decode(child_thread_index(root, NOW + timedelta(days=900)))[22:]
    assert int.from_bytes(far[:4], "big") >> 31 == 1  # DC=1 beyond ~1.7 years


def test_random_guid_differs():
    assert thread_index_root(new_thread_index(NOW)) != thread_index_root(new_thread_index(NOW))


def test_legacy_outlook_header_is_read():
    legacy = (filetime(NOW) >> 16).to_bytes(6, "big") + GUID
    value = base64.b64encode(legacy).decode()
    assert thread_index_root(value) == value
    assert abs(thread_index_time(value) - NOW) < timedelta(seconds=2)
    child = child_thread_index(value, NOW + timedelta(minutes=5))
    assert thread_index_root(child) == value


def test_malformed_values():
    assert thread_index_root("") is None
    assert thread_index_root("not base64!!") is None
    assert thread_index_root(base64.b64encode(b"\x01" * 21).decode()) is None
    assert thread_index_root(base64.b64encode(b"\x01" * 24).decode()) is None  # not 22 + 5n
    assert thread_index_root(base64.b64encode(b"\x02" + b"\x01" * 21).decode()) is None
    root = new_thread_index(NOW, GUID)
    assert thread_index_root(" " + root[:10] + "\r\n " + root[10:]) == root  # folded header
    assert thread_index_root(root.rstrip("=")) == root  # padding dropped
    fresh = child_thread_index("garbage", NOW)
    assert thread_index_root(fresh) is not None and thread_index_depth(fresh) == 0
