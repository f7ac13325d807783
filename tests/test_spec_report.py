"""scripts/spec_report.py: each stage's time from a spec run's stamped log (across a session's end
and past midnight), the rows and the mean ± std of finished runs, and refusals. Synthetic clones;
tests/test_spec_run.py reports on a real (tiny) run."""

from __future__ import annotations

import json
import os
import sys

import pytest
import yaml

from conftest import ROOT

sys.path.insert(0, str(ROOT / "scripts"))
import spec_report  # noqa: E402

# Session 1 runs check_params, lr_find and part of train, and is killed at 23:59:50 after its
# last line; session 2 (the next day) resumes train past midnight and finishes.
LOG = """\
start 2026-12-04T22:00:00Z commit abc1234 cpu AMD EPYC x 2
22:00:01 Running stage 'check_params':
22:00:02 Updating lock file 'dvc.lock'
22:00:02 Running stage 'lr_find':
22:20:02 Running stage 'train':
22:30:00 train epoch 1/24:\r  50%|     | 1/2 [00:01<00:01]\repoch   1/24: test acc 0.64
23:59:50 epoch   2/24: test acc 0.77
start 2026-12-05T23:50:00Z commit abc1234 cpu AMD EPYC x 2
23:50:01 Running stage 'check_params':
23:50:02 Running stage 'train':
00:10:02 epoch  24/24: test acc 0.94
00:10:05 Running stage 'evaluate':
00:11:05 Updating lock file 'dvc.lock'
end 2026-12-06T00:11:10Z rc 0
"""


def test_stage_times_sum_each_session_and_cross_midnight():
    times = spec_report.stage_times(LOG)
    assert times == {"check_params": (1 + 1, 2), "lr_find": (20 * 60, 1),
                     # 22:20:02 -> 23:59:50, then 23:50:02 -> 00:10:05 the next day
                     "train": (5988 + 1203, 2), "evaluate": (65, 1)}


def test_stage_times_stop_at_the_start_of_the_epoch_a_session_end_cut_short():
    """spec_run.sh stamps each redraw of a progress bar too: a session killed mid-epoch counts
    train up to the bar's line, begun when the last finished epoch's summary was written."""
    log = ("start 2026-12-05T10:00:00Z commit abc1234 cpu AMD EPYC x 2\n"
           "10:00:01 Running stage 'train':\n"
           "10:00:02 \r10:00:02 train epoch 1/24:   0%|\r10:15:00 train epoch 1/24:  4%|"
           "\r10:15:01 \r10:15:01 epoch   1/24: test acc 0.66\n"
           "10:15:01 \r10:15:01 train epoch 2/24:  4%|\r10:29:59 train epoch 2/24:  8%|\n"
           "start 2026-12-05T12:00:00Z commit abc1234 cpu AMD EPYC x 2\n")
    assert spec_report.stage_times(log) == {"train": (15 * 60, 1)}


def test_stage_times_refuses_a_stamped_line_before_start():
    with pytest.raises(spec_report.ReportError, match="before any 'start' line"):
        spec_report.stage_times("10:00:00 Running stage 'train':\n")


def make_clone(path, seed, *, finished=True, top1=0.94, tta=0.945, epochs=24, **params):
    """A clone as scripts/spec_run.sh leaves it: params.yaml, spec_run.log and the metrics."""
    (path / "metrics").mkdir(parents=True)
    (path / "plots").mkdir()
    settings = {"data": {"source": f"/data/{seed}.npz"}, "recipe": {"seed": seed},
                "train": {"epochs": epochs, **params}}
    (path / "params.yaml").write_text(yaml.safe_dump(settings))
    (path / "plots" / "train_history.csv").write_text(
        "epoch,test_acc,seconds\n1,0.6405,1021.3\n2,0.7755,1440.6\n")
    (path / "spec_run.log").write_text(LOG if finished else LOG.split("start 2026-12-05")[0])
    if finished:
        (path / "metrics" / "provenance.json").write_text(json.dumps(
            {"git_commit": "abc1234def", "device_name": "AMD EPYC", "torch_threads": 2,
             "precision": "fp32", "cpu": {"simd": "AVX2", "native_bf16": False}}))
        (path / "metrics" / "lr_find.json").write_text(json.dumps({"suggested_max_lr": 2.632e-3}))
        (path / "metrics" / "evaluate.json").write_text(
            json.dumps({"accuracy": top1, "tta_accuracy": tta}))
    return path


def test_report_rows_mean_std_and_an_unfinished_run(tmp_path, capsys):
    clones = [make_clone(tmp_path / "s0", 0, top1=0.94, tta=0.945),
              make_clone(tmp_path / "s1", 1, top1=0.93, tta=0.935),
              make_clone(tmp_path / "s2", 2, finished=False)]
    assert spec_report.main([str(c) for c in clones]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == ("| seed | commit | CPU, threads, kernels, precision | max_lr | test top-1 | "
                      "flip-TTA top-1 | check_params | lr_find | train | evaluate |")
    assert out[2] == ("| 0 | abc1234 | AMD EPYC x 2, AVX2, fp32 | 2.632e-03 | 94.00% | 94.50% | "
                      "2 s (2 sessions) | 1,200 s | 7,191 s (2 sessions) | 65 s |")
    assert out[3].startswith("| 1 | abc1234 |") and "| 93.00% | 93.50% |" in out[3]
    # sample std of 94 and 93: 0.71 percentage points
    assert out[5] == ("2 run(s), seeds 0, 1: test top-1 93.50% ± 0.71, "
                      "flip-TTA top-1 94.00% ± 0.71")
    assert out[6] == (f"seed 2 ({clones[2]}): unfinished, 2 of 24 epochs, the last at test top-1 "
                      "77.55% in 1,441 s; about 7.5 h of training to go at the median epoch "
                      "(1,231 s)")  # (1,021 + 1,441) / 2 s, 22 more epochs
    # A train_history.csv from before the run's first start is the committed reference's.
    os.utime(clones[2] / "plots" / "train_history.csv", (0, 0))
    assert spec_report.main([str(clones[2])]) == 0
    assert capsys.readouterr().out == f"seed 2 ({clones[2]}): unfinished, 0 of 24 epochs\n"


def test_report_refuses_runs_of_two_recipes_or_a_clone_without_a_log(tmp_path, capsys):
    a = make_clone(tmp_path / "a", 0)
    b = make_clone(tmp_path / "b", 1, epochs=12)
    assert spec_report.main([str(a), str(b)]) == 2
    assert f"train.epochs: 24 in {a}, 12 in {b}: not one recipe" in capsys.readouterr().err
    assert spec_report.main([str(tmp_path)]) == 2
    assert f"{tmp_path / 'spec_run.log'}: no such file" in capsys.readouterr().err
    (a / "metrics" / "evaluate.json").unlink()
    assert spec_report.main([str(a)]) == 2
    assert "metrics/evaluate.json" in capsys.readouterr().err


def make_reference(path, seed=0, top1=0.9336, **train):
    """A checkout whose metrics/ and plots/ are a finished run's, with no spec_run.log: the
    committed reference after scripts/adopt_spec_run.py, its clone gone."""
    clone = make_clone(path, seed, top1=top1)
    (clone / "spec_run.log").unlink()
    provenance = json.loads((clone / "metrics" / "provenance.json").read_text())
    provenance["params"] = {"data": {"source": "/elsewhere/cifar10.npz"}, "recipe": {"seed": seed},
                            "train": {"epochs": 24, **train}}
    (clone / "metrics" / "provenance.json").write_text(json.dumps(provenance))
    # the checkout's params.yaml is main's, not necessarily the run's: provenance counts
    (clone / "params.yaml").write_text(yaml.safe_dump({"train": {"epochs": 99}}))
    return clone


def test_the_committed_reference_is_a_finished_run_without_stage_times(tmp_path, capsys):
    reference = make_reference(tmp_path / "main")
    clone = make_clone(tmp_path / "s1", 1, top1=0.9300, tta=0.9350)
    assert spec_report.main([str(reference), str(clone)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[2] == ("| 0 | abc1234 | AMD EPYC x 2, AVX2, fp32 | 2.632e-03 | 93.36% | 94.50% | "
                      "not recorded | not recorded | not recorded | not recorded |")
    assert out[3].startswith("| 1 | abc1234 |") and out[3].endswith("| 65 s |")
    assert out[5].startswith("2 run(s), seeds 0, 1: test top-1 93.18% ± 0.25,")

    other = make_reference(tmp_path / "other", peak_epoch=3)
    assert spec_report.main([str(clone), str(other)]) == 2
    assert f"train.peak_epoch: None in {clone}, 3 in {other}" in capsys.readouterr().err
    assert spec_report.main([str(tmp_path)]) == 2
    assert "neither a scripts/spec_run.sh clone nor a finished run's checkout" in (
        capsys.readouterr().err)
    provenance = json.loads((other / "metrics" / "provenance.json").read_text())
    del provenance["params"]
    (other / "metrics" / "provenance.json").write_text(json.dumps(provenance))
    assert spec_report.main([str(other)]) == 2
    assert "metrics/provenance.json: no params recorded" in capsys.readouterr().err


def test_epochs_prints_each_runs_top1_and_seconds_blank_where_it_has_not_got_to(tmp_path,
                                                                                  capsys):
    reference = make_reference(tmp_path / "main")
    (reference / "plots" / "train_history.csv").write_text(
        "epoch,test_acc,seconds\n1,0.6405,1021.3\n2,0.7755,1440.6\n3,0.8299,1582.0\n")
    under_way = make_clone(tmp_path / "s1", 1, finished=False)
    assert spec_report.main(["--epochs", str(reference), str(under_way)]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "| epoch | seed 0: test top-1 | seconds | seed 1: test top-1 | seconds |",
        "| --- | --- | --- | --- | --- |",
        "| 1 | 64.05% | 1,021 | 64.05% | 1,021 |",
        "| 2 | 77.55% | 1,441 | 77.55% | 1,441 |",
        "| 3 | 82.99% | 1,582 |  |  |"]
    (reference / "plots" / "train_history.csv").write_text("epoch,seconds\n1,1021.3\n")
    assert spec_report.main(["--epochs", str(reference)]) == 2
    assert "train_history.csv: KeyError('test_acc')" in capsys.readouterr().err


# A run like a real one: lr_find's bar as whole lines, train's as \r-redraws on each epoch's line
# (the last one cleared), a session cut mid-epoch, then the resumed session to the end.
BAR_LOG = """\
start 2026-12-06T07:00:51Z commit abc1234 cpu AMD EPYC x 2
07:00:55 Running stage 'lr_find':
07:01:01 \r07:01:01   0%|          | 0/100 [00:00<?, ?it/s]
07:01:10   1%|          | 1/100 [00:09<15:40,  9.50s/it]
07:08:18 100%|##########| 100/100 [07:17<00:00,  4.38s/it]
07:08:19 lr_find: suggested max_lr = 0.002632 (valley)
07:08:21 Running stage 'train':
07:08:25 \r07:08:25 train epoch 1/24:   0%|\r07:09:00 train epoch 1/24:   1%|\r07:13:29 train epoch 1/24:   4%|\r07:13:39 \r07:13:39 epoch   1/24: test acc 0.67
07:13:39 \r07:13:39 train epoch 2/24:   4%|\r07:16:06 train epoch 2/24:   6%|
start 2026-12-06T09:00:00Z commit abc1234 cpu AMD EPYC x 2
09:00:01 Running stage 'train':
09:00:05 \r09:00:05 train epoch 2/24:   4%|\r09:05:00 train epoch 2/24:   8%|\r09:05:10 \r09:05:10 epoch   2/24: test acc 0.77
09:05:11 Running stage 'evaluate':
09:06:11 Updating lock file 'dvc.lock'
end 2026-12-06T09:06:15Z rc 0
"""


def finished_clone(path, log=BAR_LOG):
    """make_clone's run with every file keep_spec_run.py keeps."""
    clone = make_clone(path, 2)
    (clone / "spec_run.log").write_text(log)
    (clone / "metrics" / "provenance.json").write_text(json.dumps(
        {"git_commit": "abc1234def", "device_name": "AMD EPYC", "torch_threads": 2,
         "precision": "bf16", "cpu": {"simd": "AVX512", "native_bf16": True}}))
    for name in ("metrics/train.json", "metrics/export.json", "plots/lr_find.csv",
                 "plots/per_class.csv"):
        (clone / name).write_text("{}" if name.endswith("json") else "a\n1\n")
    return clone


def test_keep_spec_run_trims_the_bars_but_not_the_stage_times_or_the_figures(tmp_path, capsys):
    import keep_spec_run

    trimmed = keep_spec_run.trim_log(BAR_LOG)
    assert spec_report.stage_times(trimmed) == spec_report.stage_times(BAR_LOG)
    # 07:08:21 -> 07:13:39 (the cut epoch's line began), then 09:00:01 -> 09:05:11
    assert spec_report.stage_times(trimmed)["train"] == (318 + 310, 2)
    lines = trimmed.split("\n")
    assert "07:01:10   1%|" not in trimmed and "07:08:18 100%|" in trimmed  # lr_find's last
    assert ("07:08:25 \r07:13:29 train epoch 1/24:   4%|\r07:13:39 epoch   1/24: test acc 0.67"
            not in lines)  # an epoch's line: its first stamp and its last non-blank state
    assert "07:08:25 \r07:13:39 epoch   1/24: test acc 0.67" in lines
    assert "07:13:39 \r07:16:06 train epoch 2/24:   6%|" in lines  # where the session was cut

    clone = finished_clone(tmp_path / "clone")
    dest = tmp_path / "kept" / "seed2-bf16"
    assert keep_spec_run.main([str(clone), "--dest", str(dest)]) == 0
    assert f"wrote {dest}" in capsys.readouterr().out
    assert sorted(str(p.relative_to(dest)) for p in dest.rglob("*.*")) == sorted(
        keep_spec_run.KEPT + ["spec_run.log"])
    assert spec_report.main([str(clone)]) == 0
    from_clone = capsys.readouterr().out
    assert "| 628 s (2 sessions) |" in from_clone  # the file's \r kept: as trim_log's check
    assert spec_report.main([str(dest)]) == 0
    assert capsys.readouterr().out == from_clone  # the same row, stage times and all
    assert list((tmp_path / "kept").iterdir()) == [dest]  # no staging folder left


def test_keep_spec_run_refuses_an_unfinished_run_a_missing_file_and_an_existing_folder(
        tmp_path, capsys):
    import keep_spec_run

    unfinished = finished_clone(tmp_path / "a", BAR_LOG.rsplit("end ", 1)[0])
    assert keep_spec_run.main([str(unfinished), "--dest", str(tmp_path / "out")]) == 2
    assert "the run has not finished" in capsys.readouterr().err
    clone = finished_clone(tmp_path / "b")
    (clone / "metrics" / "export.json").unlink()
    assert keep_spec_run.main([str(clone), "--dest", str(tmp_path / "out")]) == 2
    assert "no metrics/export.json" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "mine.txt").write_text("kept")
    assert keep_spec_run.main([str(finished_clone(tmp_path / "c")), "--dest",
                               str(tmp_path / "out")]) == 2
    assert "exists; a kept run is not replaced" in capsys.readouterr().err
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["mine.txt"]
