"""Issue 35: runs that share the machine. With `threads 0` (the default) a run takes the cores other processes leave free and
says so; the choice reaches the kernel of a papermill run and each trial of a sweep; `threads N` still forces a count.
These check the setting, not a speed: the sharing table in nbs/bench.ipynb (make results-sharing) measures the speed."""
import os, sys, json, subprocess, contextlib
from pathlib import Path
import pytest, yaml, torch
from conftest import ROOT, TINY, papermill, notebook_text
from climbkit.cpu import available_cores

@contextlib.contextmanager
def busy_core():
    "Another process keeping one core busy for as long as the block lasts."
    p = subprocess.Popen([sys.executable, '-c', 'while True: pass'])
    try: yield p
    finally: p.kill(); p.wait()

def test_a_papermill_run_takes_the_cores_a_busy_process_leaves(tmp_path):
    out = tmp_path/'runs'/'shared'/'train.ipynb'; out.parent.mkdir(parents=True)
    with busy_core(): papermill(out, {**TINY, 'epochs': 1, 'threads': 0, 'name': 'shared', 'out_dir': tmp_path/'runs'})
    res = json.loads((tmp_path/'runs'/'shared'/'results.json').read_text())
    cores = available_cores()
    assert res['threads'] <= max(1, cores - 1), res['threads_reason']  # one core was someone else's
    assert 'other processes keep' in res['threads_reason'] and f'of {cores} cores' in res['threads_reason']
    assert res['profile']['threads'] >= 1 and res['profile']['threads_reason']
    text = notebook_text(out)  # the run's first line says what it chose and why
    assert f"thread{'s' if res['profile']['threads'] > 1 else ''} ({res['profile']['threads_reason']}) on cpu" in text, text[:3000]

def test_threads_n_still_forces_the_count():
    from climbkit.bench import bench_learner
    with busy_core():
        _, learn = bench_learner(task='synthetic', n_samples=256, d_in=8, hidden='8', threads=2)
        assert torch.get_num_threads() == 2 and learn.results()['threads_reason'] == 'threads 2 forced'

def test_each_sweep_trial_chooses_its_threads_from_the_free_cores(tmp_path):
    spec = dict(task='synthetic', fixed={'n_samples': 1024, 'd_in': 16, 'hidden': '32', 'batch_size': 32, 'epochs': 2},
                search={'lr': {'log_uniform': [1e-3, 3e-2]}}, trials=2, workers=2, sampler='tpe', pruner='none')
    (tmp_path/'space.yaml').write_text(yaml.safe_dump(spec))
    sweep = str(Path(sys.executable).parent/'climbkit-sweep')
    p = subprocess.run([sweep, str(tmp_path/'space.yaml'), '--name', 's', '--out_dir', str(tmp_path)], capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    trials = sorted((tmp_path/'s'/'trials').glob('trial-*'))
    assert len(trials) == 2
    for t in trials:
        res = json.loads((t/'results.json').read_text())
        assert 1 <= res['threads'] <= available_cores() and 'forced' not in res['threads_reason'] and 'cores' in res['threads_reason'], res['threads_reason']
        assert json.loads((t/'config.json').read_text())['threads'] == 0  # the sweep passed the default on: each trial chose
