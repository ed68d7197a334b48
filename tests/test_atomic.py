"""Files written whole or not at all (exprefine.atomic)."""

import pytest

from exprefine.atomic import atomic_path, write_text_atomically


def test_a_failed_write_leaves_the_previous_file_and_no_temporary(tmp_path):
    target = tmp_path / "sub" / "record.json"
    write_text_atomically(target, "first\n")  # parent folders are made
    assert target.read_text() == "first\n"
    with pytest.raises(RuntimeError, match="killed"):
        with atomic_path(target) as tmp:
            tmp.write_text("half of the sec")
            raise RuntimeError("killed while writing")
    assert target.read_text() == "first\n"
    assert sorted(p.name for p in target.parent.iterdir()) == ["record.json"]
    write_text_atomically(target, "second\n")
    assert target.read_text() == "second\n"
