"""Many machines, one record of runs (docs/team.md): a bare git repository
is the team's git remote and a real SSH server on 127.0.0.1 (OpenSSH's sshd, a throwaway key)
holds the DVC remote. Two clones run a sweep's tasks as the schedulers would, machine A the
SLURM array script and machine B the SkyPilot task's run section, each with its index set, and
push their experiments; a third clone pulls both, compares them and uses one's model."""

from __future__ import annotations

import getpass
import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from conftest import (ROOT, commit_all, copy_project, exp_results, free_port, readme_line,
                      set_params, sh)

pytestmark = pytest.mark.slow  # real dvc, sshd and training subprocesses

SSHD = Path("/usr/sbin/sshd")
SWEEP = "train.max_lr=0.003\ntrain.max_lr=0.02\n"  # task 0: machine A, task 1: machine B



@pytest.fixture(scope="module")
def team(tmp_path_factory) -> dict:
    """sshd on a free port of 127.0.0.1 accepting one throwaway key, and a HOME whose
    ``.ssh`` holds that key and the server's host key (DVC's SSH client reads them there) and
    whose ``.gitconfig`` names the committer."""
    if not SSHD.is_file():
        if os.environ.get("CI"):
            pytest.fail(f"{SSHD} is missing; .ci/run installs openssh-server")
        pytest.skip(f"{SSHD} is absent (apt-get install openssh-server)")
    base = tmp_path_factory.mktemp("team")
    home, server = base / "home", base / "sshd"
    (home / ".ssh").mkdir(parents=True)
    server.mkdir()
    for key in (server / "host_key", home / ".ssh" / "id_ed25519"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)],
                       check=True)
    shutil.copy(home / ".ssh" / "id_ed25519.pub", server / "authorized_keys")
    port = free_port()
    host_key = " ".join((server / "host_key.pub").read_text().split()[:2])
    (home / ".ssh" / "known_hosts").write_text(f"[127.0.0.1]:{port} {host_key}\n")
    (home / ".gitconfig").write_text("[user]\n\tname = ci\n\temail = ci@example.com\n")
    (server / "sshd_config").write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {server / 'host_key'}\n"
        f"AuthorizedKeysFile {server / 'authorized_keys'}\nPasswordAuthentication no\n"
        "KbdInteractiveAuthentication no\nPermitRootLogin prohibit-password\nStrictModes no\n"
        f"UsePAM no\nPidFile {server / 'sshd.pid'}\nSubsystem sftp internal-sftp\n")
    Path("/run/sshd").mkdir(exist_ok=True)  # sshd's privilege separation directory
    log = open(server / "sshd.log", "w")
    proc = subprocess.Popen([str(SSHD), "-D", "-e", "-f", str(server / "sshd_config")],
                            stdout=log, stderr=subprocess.STDOUT)
    while "Server listening" not in (server / "sshd.log").read_text():  # an event, not a sleep
        assert proc.poll() is None, (server / "sshd.log").read_text()
        time.sleep(0.1)
    yield {"base": base, "home": home, "store": base / "dvc-store",
           "url": f"ssh://{getpass.getuser()}@127.0.0.1:{port}{base / 'dvc-store'}"}
    proc.terminate()
    proc.wait(timeout=30)
    log.close()


def run(cwd: Path, team: dict, *args: str, **env: str) -> subprocess.CompletedProcess:
    return sh(cwd, *args, HOME=str(team["home"]), **env)


def run_readme(cwd: Path, team: dict, prefix: str, **placeholders: str
               ) -> subprocess.CompletedProcess:
    """docs/team.md's recipe line starting with ``prefix``, through bash as a user types it,
    its ``<placeholders>`` (and the example remote URL) filled in."""
    line = readme_line(prefix, "docs/team.md").split(" #")[0]
    line = re.sub(r"ssh://\S+", team["url"], line)
    for name, value in placeholders.items():
        line = line.replace(f"<{name.replace('_', '-')}>", value)
    return run(cwd, team, "bash", "-c", line)


def test_two_machines_push_a_sweep_and_a_third_pulls_compares_and_uses_it(team, cifar_npz):
    base = team["base"]
    # The lead sets the project up: a tiny pipeline, the SSH DVC remote, a baseline run pushed.
    lead = copy_project(base / "lead")
    shutil.copytree(ROOT / "scripts" / "sweep", lead / "scripts" / "sweep")
    (lead / "scripts" / "sweep" / "sweep.txt").write_text(SWEEP)
    set_params(lead,
               data={"source": str(cifar_npz), "train_subset": 1000, "test_subset": 500},
               model={"width_multiplier": 0.125}, lr_find={"num_iter": 10},
               recipe={"batch_size": 100, "device": "cpu"},
               train={"epochs": 2, "peak_epoch": 1})
    origin = base / "origin.git"
    run(base, team, "git", "init", "-q", "--bare", "-b", "main", str(origin))
    run(lead, team, "git", "init", "-q", "-b", "main")
    run_readme(lead, team, "dvc remote add -d team ssh://")
    commit_all(lead, "project")
    run(lead, team, "dvc", "repro")
    commit_all(lead, "baseline")
    run(lead, team, "dvc", "push")
    run(lead, team, "git", "remote", "add", "origin", str(origin))
    run(lead, team, "git", "push", "-q", "origin", "main")

    # Machine A: the SLURM array script as sbatch would run it, task 0.
    a = run(lead, team, "bash", "scripts/sweep/sweep.sbatch", REPO=str(origin),
            SLURM_ARRAY_TASK_ID="0", SLURM_SUBMIT_DIR=str(lead), WORKDIR=str(base / "a"))
    # Machine B: the SkyPilot task's run section, in its synced workdir, task 1.
    sky = yaml.safe_load((ROOT / "scripts" / "sweep" / "sweep.sky.yaml").read_text())
    b = run(lead, team, "bash", "-c", sky["run"], REPO=str(origin), INDEX="1",
            WORKDIR=str(base / "b"))
    for out, lr in ((a, "0.003"), (b, "0.02")):
        assert f"dvc exp run --pull --allow-missing -S train.max_lr={lr}" in out.stdout
        assert "Stage 'download' didn't change, skipping" in out.stdout, out.stdout[-3000:]
        assert "Running stage 'train'" in out.stdout
    pushed = run(lead, team, "dvc", "exp", "list", "origin", "--name-only").stdout.split()
    assert len(pushed) == 2, pushed

    # Machine C: a fresh clone pulls both experiments and compares them.
    c = base / "c"
    run(base, team, "git", "clone", "-q", str(origin), str(c))
    for name in pushed:  # their outputs too, over SSH
        run_readme(c, team, "dvc exp pull origin <name>", name=name)
    shown = json.loads(run(c, team, "dvc", "exp", "show", "--json").stdout)
    found = exp_results(shown)
    assert {lr for lr, _ in found.values()} == {0.003, 0.02}, json.dumps(shown)[:3000]
    assert set(found) == set(pushed), found
    assert all(0 <= acc <= 1 for _, acc in found.values())
    first, second = pushed
    shown_diff = run_readme(c, team, "dvc metrics diff <name>", name=first, other_name=second)
    assert "metrics/evaluate.json" in shown_diff.stdout and "accuracy" in shown_diff.stdout
    diff = run(c, team, "dvc", "metrics", "diff", first, second, "--json").stdout
    assert json.loads(diff)["metrics/evaluate.json"]["accuracy"]["old"] == found[first][1]

    # ... applies one and uses its model, pulled from the SSH remote.
    run_readme(c, team, "dvc exp apply <name>", name=first)  # and dvc pull
    assert run(c, team, "dvc", "status").stdout.strip() == "Data and pipelines are up to date."
    train = json.loads((c / "metrics" / "train.json").read_text())
    assert train["max_lr"] == found[first][0]
    image = np.zeros((32, 32, 3), dtype=np.uint8)
    image[8:24, 8:24] = 200
    Image.fromarray(image).save(c / "square.png")
    predicted = json.loads(run(c, team, "python", "-m", "resnet9.predict", "square.png", "--json",
                               PYTHONPATH=str(c)).stdout)
    info = json.loads(run(c, team, "python", "-m", "resnet9.predict", "--info", "--json",
                          PYTHONPATH=str(c)).stdout)
    assert info["max_lr"] == found[first][0]  # the model is the applied experiment's
    assert predicted["predictions"][0]["top_k"][0]["class"] in info["classes"]
