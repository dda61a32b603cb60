import os
import stat

import pytest

from tfautocompress import artifacts


def test_write_json_round_trip_and_usual_mode(tmp_path):
    path = tmp_path / "sub" / "a.json"
    artifacts.write_json(str(path), {"b": 1, "a": [1.5]})
    assert artifacts.read_json(str(path)) == {"a": [1.5], "b": 1}
    mask = os.umask(0)
    os.umask(mask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~mask
    assert os.listdir(tmp_path / "sub") == ["a.json"]


def test_failed_write_leaves_nothing_and_keeps_the_old_file(tmp_path):
    path = tmp_path / "a.json"
    artifacts.write_json(str(path), {"v": 1})
    with pytest.raises(TypeError):
        artifacts.write_json(str(path), {"v": object()})  # not JSON-serialisable
    assert artifacts.read_json(str(path)) == {"v": 1}
    assert os.listdir(tmp_path) == ["a.json"]
