import os, sys, json, subprocess
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent/'shared'
# a tiny model and data set: every end-to-end run takes seconds
TINY = dict(n_routes=600, d_model=32, n_layers=1, n_heads=2, dim_feedforward=64, epochs=2, batch_size=32,
            warmup_steps=5, threads=1, samples_per_grade=2, sample_grades='6C 7B', metric_samples=3)
# the report runs at its defaults (the grade-control sweep included): tests run what users run

@pytest.fixture(autouse=True, scope='session')
def _env(tmp_path_factory):
    "A private processed-data cache, and the test's Python first on PATH (papermill starts `python` for the kernel)."
    os.environ['CLIMBKIT_CACHE'] = str(tmp_path_factory.mktemp('cache'))
    os.environ['PATH'] = str(Path(sys.executable).parent) + os.pathsep + os.environ['PATH']
    os.environ.pop('CLIMBKIT_PROGRESS', None)
    yield

def copy_project(dest:Path) -> Path:
    "A copy of the project's pages, notebooks, configs and ledger at `dest` (mtimes kept, so make finds the venv, linked, up to date)."
    import shutil
    dest.mkdir(parents=True)
    for name in ('README.md', 'Makefile', 'settings.ini', 'setup.py'): shutil.copy2(ROOT/name, dest/name)
    for name in ('nbs', 'results'): shutil.copytree(ROOT/name, dest/name, ignore=shutil.ignore_patterns('.ipynb_checkpoints', '__pycache__'))
    (dest/'.venv').symlink_to(Path(sys.executable).parent.parent)
    return dest

def papermill(out_nb, params:dict, cwd=ROOT, check=True, notebook='train.ipynb'):
    "Run nbs/`notebook` through the papermill command line; returns the finished process."
    cmd = [str(Path(sys.executable).parent/'papermill'), str(ROOT/'nbs'/notebook), str(out_nb), '--log-output']
    for k, v in params.items(): cmd += ['-p', k, str(v)]
    p = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=600)
    if check and p.returncode != 0: raise AssertionError(f'papermill failed:\n{p.stdout[-3000:]}\n{p.stderr[-5000:]}')
    return p

def notebook_text(path) -> str:
    "All text outputs of a rendered notebook."
    nb = json.loads(Path(path).read_text())
    out = []
    for c in nb['cells']:
        for o in c.get('outputs', []):
            if 'text' in o: out.append(''.join(o['text']))
            for k, v in o.get('data', {}).items():
                if k == 'text/plain': out.append(''.join(v))
            if o.get('output_type') == 'error': out.append('\n'.join([o['ename'], o['evalue']]))
    return '\n'.join(out)

def metrics(run_dir) -> list[dict]:
    "The rows of a run's metrics.csv."
    import csv
    with open(Path(run_dir)/'metrics.csv') as f: return list(csv.DictReader(f))

def stop_with_sigterm(cmd:list[str], run_dir, env=None, timeout:float=120) -> str:
    "Start `cmd` (a training run writing `run_dir`), send it SIGTERM as soon as its first checkpoint exists; its stdout."
    import time, signal
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    latest, t_end = Path(run_dir)/'checkpoints'/'latest.pt', time.time() + timeout
    while not latest.exists():
        assert proc.poll() is None and time.time() < t_end, proc.stderr.read()[-3000:]
        time.sleep(0.005)
    proc.send_signal(signal.SIGTERM)
    return proc.communicate(timeout=timeout)[0]
