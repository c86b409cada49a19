"A run killed with SIGKILL mid-training keeps its last good checkpoint and resumes where it stopped."
import os, sys, time, signal, subprocess, textwrap
from pathlib import Path
import torch
from climbkit.learner import start_run, load_checkpoint_file
from conftest import TINY

def test_sigkill_then_resume(tmp_path):
    runs = tmp_path/'runs'
    params = {k: v for k, v in TINY.items() if k not in ('samples_per_grade', 'sample_grades')}
    params.update(out_dir=str(runs), name='k', epochs=40, save_every=1)
    script = textwrap.dedent(f'''
        from climbkit.learner import start_run
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
