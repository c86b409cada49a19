"A run killed with SIGKILL mid-training keeps its last good checkpoint and resumes where it stopped."
import os, sys, time, signal, subprocess, textwrap
import pytest
from pathlib import Path
import torch
from climbkit.learner import load_checkpoint_file
from climbkit.run import start_run
from conftest import TINY

def test_sigkill_then_resume(tmp_path):
    runs = tmp_path/'runs'
    params = {k: v for k, v in TINY.items() if k not in ('samples_per_grade', 'sample_grades')}
    params.update(out_dir=str(runs), name='k', epochs=40, save_every=1)
    script = textwrap.dedent(f'''
        from climbkit.run import start_run
        _, learn = start_run({params!r}); learn.fit()
    ''')
    proc = subprocess.Popen([sys.executable, '-c', script], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=os.environ)
    latest, t_end = runs/'k'/'checkpoints'/'latest.pt', time.time() + 180
    try:
        while time.time() < t_end and not (runs/'k'/'checkpoints'/'epoch_3.pt').exists():
            assert proc.poll() is None, proc.stderr.read().decode()[-3000:]
            time.sleep(0.05)
        time.sleep(0.3)  # land somewhere inside a later epoch, maybe inside a checkpoint write
    finally:
        proc.send_signal(signal.SIGKILL); proc.wait()
    ck = load_checkpoint_file(latest)  # intact, whatever moment the kill hit
    done = ck['epoch']
    assert 3 <= done < 40 and [h['epoch'] for h in ck['history']] == list(range(1, done + 1))
    _, learn = start_run({**params, 'resume': True, 'epochs': done + 2}); learn.fit()
    assert [h['epoch'] for h in learn.history] == list(range(1, done + 3))
    assert load_checkpoint_file(latest)['epoch'] == done + 2
    assert not [p for p in latest.parent.iterdir() if p.name.endswith('.tmp')]  # a write cut by the kill was swept up
    rows = (runs/'k'/'metrics.csv').read_text().splitlines()
    assert len(rows) == done + 3  # header + one row per epoch, none duplicated by the kill


# --- issue 5: step-level checkpoints, exact resume, signals, the run-folder lock ---
import csv, random, re, json
from conftest import papermill, notebook_text

EXACT = {k: v for k, v in TINY.items() if k not in ('samples_per_grade', 'sample_grades')}
EXACT.update(n_routes=3000, d_model=64, n_layers=2, batch_size=16, epochs=10, checkpoint_every=7, save_every=1, keep_last=2, precision='fp32',
             threads=1, grader='none', metric_samples=2)
COMPARED = ('epoch', 'step', 'train_items', 'train_loss', 'valid_loss', 'lr')

def _rows(run):
    with open(run/'metrics.csv') as f: return [{k: r[k] for k in COMPARED} for r in csv.DictReader(f)]

def _pid_holding(run):
    "The pid of the live process holding the run folder's lock (training in a papermill kernel)."
    m = re.match(r'pid (\d+)', (run/'.lock').read_text()) if (run/'.lock').exists() else None
    return int(m.group(1)) if m else None

def test_killed_at_random_moments_resumes_exactly(tmp_path):
    "SIGKILL the training process of a papermill run 3 times at random moments; the result equals an uninterrupted run."
    runs = tmp_path/'runs'
    papermill(tmp_path/'ref.ipynb', {**EXACT, 'out_dir': runs, 'name': 'ref'})
    rng, kills, killed = random.Random(5), 0, set()
    cmd = [str(Path(sys.executable).parent/'papermill'), 'nbs/train.ipynb', str(tmp_path/'cut.ipynb'), '--log-output']
    for k, v in {**EXACT, 'out_dir': runs, 'name': 'cut'}.items(): cmd += ['-p', k, str(v)]
    run = runs/'cut'
    while kills < 3:
        proc = subprocess.Popen(cmd if not kills else cmd + ['-p', 'resume', str(run)], cwd=Path(__file__).parents[1],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
        t_end, pid = time.time() + 120, None
        while time.time() < t_end and proc.poll() is None:  # wait until the kernel trains and has a checkpoint
            pid = _pid_holding(run)
            if pid and pid not in killed and (run/'checkpoints'/'latest.pt').exists(): break  # (the lock file outlives a killed holder)
            time.sleep(0.05)
        assert pid and proc.poll() is None, f'the run did not start training: {proc.stderr.read().decode()[-2000:]}'
        time.sleep(rng.uniform(0.2, 2.0))  # anywhere: inside a step, a checkpoint write, a validation
        os.kill(pid, signal.SIGKILL); kills += 1; killed.add(pid)
        proc.wait(timeout=60)
        ck = load_checkpoint_file(run/'checkpoints'/'latest.pt')  # property 1: the last good checkpoint is readable
        assert ck['step'] > 0
    papermill(tmp_path/'end.ipynb', {**EXACT, 'out_dir': runs, 'resume': run})  # until the planned epochs are done
    assert _rows(run) == _rows(runs/'ref')  # property 2: the same figures as the uninterrupted run, to the last digit
    assert sorted(p.name for p in (run/'checkpoints').glob('epoch_*.pt')) == ['epoch_10.pt', 'epoch_9.pt']  # keep_last 2
    assert len(list(run.glob('config.resume-step*.json'))) >= 1 and 'Resuming' in notebook_text(tmp_path/'end.ipynb')

SCRIPT = '''
import sys
from climbkit.run import start_run
_, learn = start_run({params!r})
print('training', flush=True)
learn.fit()
print('stopped:', learn.stop_reason, flush=True)
'''

def _wait_for_training(proc):
    for line in proc.stdout:
        if line.strip() == 'training': return
    raise AssertionError(f'the run did not start: {proc.stderr.read()[-2000:]}')

@pytest.mark.parametrize('sig', [signal.SIGTERM, signal.SIGINT])
def test_signal_saves_a_checkpoint_and_stops(tmp_path, sig):
    runs = tmp_path/'runs'
    params = {**EXACT, 'out_dir': str(runs), 'name': 's', 'epochs': 200, 'checkpoint_every': 0}
    proc = subprocess.Popen([sys.executable, '-c', SCRIPT.format(params=params)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _wait_for_training(proc)
    time.sleep(1.5)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err[-2000:]
    assert f'stopped: {sig.name} during epoch' in out or f'stopped: {sig.name} after epoch' in out
    ck = load_checkpoint_file(runs/'s'/'checkpoints'/'latest.pt')
    res = json.loads((runs/'s'/'results.json').read_text())
    assert res['status'].startswith(sig.name) and res['steps'] == ck['step'] > 0
    _, learn = start_run({**params, 'resume': True, 'epochs': ck['epoch'] + 1})
    learn.fit()
    assert learn.epoch == ck['epoch'] + 1 and learn.stop_reason == f"reached epoch {ck['epoch'] + 1}"

def test_a_live_run_folder_is_locked(tmp_path):
    runs = tmp_path/'runs'
    params = {**EXACT, 'out_dir': str(runs), 'name': 'live', 'epochs': 200}
    proc = subprocess.Popen([sys.executable, '-c', SCRIPT.format(params=params)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _wait_for_training(proc)
        while not (runs/'live'/'checkpoints'/'latest.pt').exists(): time.sleep(0.05)
        config = (runs/'live'/'config.json').read_bytes()
        with pytest.raises(Exception, match=rf"Run folder .*live is in use by a live run \(pid {proc.pid} on "):
            start_run({**params, 'resume': True})
        assert (runs/'live'/'config.json').read_bytes() == config and not list((runs/'live').glob('config.resume*'))  # untouched
    finally:
        proc.kill(); proc.wait()
    _, learn = start_run({**params, 'resume': True, 'epochs': 1})  # the killed process's lock died with it
    assert learn.lock.held; learn.lock.release()
