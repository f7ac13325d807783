import pandas as pd
import pytest

from resnet9 import atomic_io


def test_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "m.json"
    atomic_io.write_json(target, {"accuracy": 0.9})

    def broken(path):
        path.write_text("{half")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic_io.write_with(target, broken)
    assert atomic_io.read_json(target) == {"accuracy": 0.9}
    assert [p.name for p in tmp_path.iterdir()] == ["m.json"]


def test_directory_output_is_replaced_whole(tmp_path):
    target = tmp_path / "ds"

    def make(content):
        def write(path):
            path.mkdir()
            (path / "a.txt").write_text(content)
        return write

    atomic_io.write_with(target, make("one"))
    atomic_io.write_with(target, make("two"))
    assert (target / "a.txt").read_text() == "two"
    assert [p.name for p in tmp_path.iterdir()] == ["ds"]


def test_csv_round_trip(tmp_path):
    frame = pd.DataFrame({"lr": [1e-3, 1e-2], "loss": [2.3, 1.9]})
    atomic_io.write_csv(tmp_path / "f.csv", frame)
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "f.csv"), frame)
