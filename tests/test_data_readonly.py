"""A dataset folder without write bits (like ../shared/data) is never written to."""
import os
import stat

from dhmrec_pyg.data import load_dataset, materialise_synthetic


def test_read_only_folder_gets_no_cache(tmp_path):
    folder = materialise_synthetic("tiny", tmp_path)
    before = sorted(os.listdir(folder))
    os.chmod(folder, stat.S_IRUSR | stat.S_IXUSR | stat.S_IRGRP | stat.S_IXGRP)
    try:
        data = load_dataset(str(folder))
        assert int(data["user"].num_nodes) > 0
        assert sorted(os.listdir(folder)) == before
    finally:
        os.chmod(folder, 0o755)
