"""One process runs a net at a time: the owner lock beside the database file."""

from __future__ import annotations

import os
import pickle
import signal
import subprocess
import sys
import textwrap

import pytest

import netrun
from netrun.graphs import chain
from netrun.ownership import find_owner, lock_path

HOLDER = textwrap.dedent("""
    import sys, time
    import netrun
    from netrun.graphs import chain
    net = netrun.Net(chain("A", "B"), db=sys.argv[1])
    print("ready", flush=True)
    time.sleep(60)
""")


def test_a_second_open_of_a_running_net_is_refused_until_the_first_closes(tmp_path):
    db = str(tmp_path / "run.db")
    first = netrun.Net(chain("A", "B"), db=db)
    assert find_owner(db).pid == os.getpid()
    with pytest.raises(netrun.NetInUse, match=rf"run.db is in use by pid {os.getpid()}") as info:
        netrun.Net.resume(db)
    assert info.value.pid == os.getpid()
    assert pickle.loads(pickle.dumps(info.value)).pid == os.getpid()
    first.close()
    assert find_owner(db) is None
    with netrun.Net.resume(db) as again:
        assert find_owner(db).pid == os.getpid()
        assert again.get_startable_epochs() == []
    assert find_owner(db) is None


def test_a_net_in_use_is_refused_under_another_name_for_the_same_file(tmp_path):
    db = tmp_path / "run.db"
    os.symlink(db.name, tmp_path / "link.db")
    netrun.Net(chain("A", "B"), db=db).close()
    with netrun.Net.resume(db):
        assert find_owner(str(tmp_path / "link.db")).pid == os.getpid()
        with pytest.raises(netrun.NetInUse):  # two runs of one net, through a symlink
            netrun.Net.resume(tmp_path / "link.db")
    assert lock_path(str(tmp_path / "link.db")) == lock_path(str(db))


def test_a_new_net_on_a_file_in_use_is_refused_without_touching_it(tmp_path):
    db = str(tmp_path / "run.db")
    with netrun.Net(chain("A", "B"), db=db) as net:
        net.inject_source_epoch("A")
        before = (tmp_path / "run.db").read_bytes()
        with pytest.raises(netrun.NetInUse):
            netrun.Net(chain("A", "B"), db=db)
        assert (tmp_path / "run.db").read_bytes() == before


def test_a_killed_owner_releases_the_net(tmp_path):
    db = str(tmp_path / "run.db")
    child = subprocess.Popen([sys.executable, "-c", HOLDER, db], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "ready"
        owner = find_owner(db)
        assert owner is not None and owner.pid == child.pid
        with pytest.raises(netrun.NetInUse, match=f"pid {child.pid}"):
            netrun.Net.resume(db)
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
        child.stdout.close()
    assert find_owner(db) is None
    with netrun.Net.resume(db) as net:
        assert find_owner(db).pid == os.getpid()
        net.inject_source_epoch("A")
    assert os.path.exists(lock_path(db))  # kept: deleting it could split the lock in two


def test_a_lock_file_that_cannot_be_created_gives_a_storage_error_naming_it(tmp_path):
    db = str(tmp_path / "run.db")
    os.mkdir(lock_path(db))  # something in the way of the lock file
    with pytest.raises(netrun.StorageError, match="cannot create the lock file .*run.db-lock"):
        netrun.Net(chain("A", "B"), db=db)
    assert not os.path.exists(db)


def test_a_database_in_a_folder_that_does_not_exist_is_refused_naming_the_folder(tmp_path):
    folder = tmp_path / "no such folder"
    with pytest.raises(netrun.StorageError, match="the folder .*no such folder does not exist") as info:
        netrun.Net(chain("A", "B"), db=folder / "run.db")
    assert info.value.__cause__ is None  # the message says it all (the command prints one line)
    assert not folder.exists()
