"""Issue 37, part 3: a write that fails loses nothing. Each write below fails for real, part-way, in a child process whose files may
not grow past a limit (RLIMIT_FSIZE: a large write stops there with 'File too large', as on a full disk): a checkpoint, results.json,
a ledger file and a sweep's journal. Each time the previous file is intact, the child says in one sentence what failed and where, and
a resume continues exactly. A damaged latest.pt at resume falls back to the newest readable checkpoint, with a warning naming both."""
import sys, csv, json, shutil, hashlib, resource, subprocess
from pathlib import Path
import pytest, torch, yaml
from climbkit.core import ClimbkitError, ClimbkitWarning
from climbkit.learner import load_checkpoint_file
from climbkit.run import start_run
from conftest import TINY

BIN = Path(sys.executable).parent
# a climb run of 4 short epochs, a checkpoint each; fp32 and one thread, so a resumed run matches an uninterrupted one to the last digit
P = {k: v for k, v in TINY.items() if k not in ('samples_per_grade', 'sample_grades')}
P.update(epochs=4, save_every=1, precision='fp32', grader='none', metric_samples=2)
COMPARED = ('epoch', 'step', 'train_items', 'train_loss', 'valid_loss', 'lr')

def sha(path) -> str: return hashlib.sha256(Path(path).read_bytes()).hexdigest()

def tmp_files(folder) -> list[Path]: return [p for p in Path(folder).rglob('*') if p.name.endswith('.tmp')]

def limit_files(size:int):
    "For preexec_fn: no file of the child may grow past `size` bytes."
    return lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (size, resource.RLIM_INFINITY))

def rows(run, keys=COMPARED) -> list[dict]:
    with open(Path(run)/'metrics.csv') as f: return [{k: r[k] for k in keys} for r in csv.DictReader(f)]

@pytest.fixture(scope='module')
def runs(tmp_path_factory) -> Path:
    "`ref`: the run uninterrupted; `base`: the same run stopped after 2 of its 4 epochs, which each test copies and continues."
    d = tmp_path_factory.mktemp('runs')
    _, ref = start_run({**P, 'out_dir': str(d), 'name': 'ref'}); ref.fit()
    _, base = start_run({**P, 'out_dir': str(d), 'name': 'base'}); base.fit(epochs=2)
    return d

def copy_base(runs:Path, tmp_path:Path, name:str) -> Path: return Path(shutil.copytree(runs/'base', tmp_path/name))

def finish_like_ref(run:Path, runs:Path, learn=None):
    "Resume `run` (no limit now) to its planned end: the same figures and weights as the uninterrupted run."
    if learn is None: _, learn = start_run({**P, 'out_dir': str(run.parent), 'resume': str(run)})
    learn.fit()
    assert rows(run) == rows(runs/'ref')
    a, b = (load_checkpoint_file(r/'checkpoints'/'latest.pt') for r in (run, runs/'ref'))
    assert a['step'] == b['step'] and a['model'].keys() == b['model'].keys() and all(torch.equal(a['model'][k], b['model'][k]) for k in a['model'])
    assert json.loads((run/'results.json').read_text())['status'] == 'reached epoch 4' and not tmp_files(run)

def test_checkpoint_write_fails_mid_run(runs, tmp_path):
    "`climbkit-train --resume`, files limited to half a checkpoint: epoch 3's latest.pt is cut off half-way; epoch 2's stays."
    run = copy_base(runs, tmp_path, 'a'); latest = run/'checkpoints'/'latest.pt'
    before = sha(latest)
    args = [a for k, v in {**P, 'out_dir': tmp_path, 'resume': run}.items() for a in (f'--{k}', str(v))]
    out = subprocess.run([str(BIN/'climbkit-train'), *args], capture_output=True, text=True, timeout=300,
                         preexec_fn=limit_files(latest.stat().st_size // 2))
    said = f'Could not write {latest}: File too large (the previous file, if any, is intact).'
    assert out.returncode == 2 and out.stderr.strip().splitlines()[-1] == f'climbkit-train: {said}', out.stderr[-3000:]
    assert 'Traceback' not in out.stderr and f'Stopped: failed during epoch 3: ClimbkitError: {said[:-1]}. Best' in out.stdout, out.stdout[-2000:]
    assert sha(latest) == before and load_checkpoint_file(latest)['epoch'] == 2 and not tmp_files(run)
    assert sorted(p.name for p in latest.parent.iterdir()) == ['best.pt', 'epoch_1.pt', 'epoch_2.pt', 'latest.pt']
    finish_like_ref(run, runs)

FULL_DISK = '''
import sys, hashlib, resource
from climbkit.core import ClimbkitError
from climbkit.learner import Callback
from climbkit.run import start_run
class FullDisk(Callback):
    "After epoch 3's checkpoint and metrics, no file may grow past half of results.json: the next results.json is cut off half-way."
    order = 30
    def after_epoch(self, learn):
        if learn.epoch != 3: return
        p = learn.run_dir/'results.json'
        print('before:', hashlib.sha256(p.read_bytes()).hexdigest(), flush=True)
        resource.setrlimit(resource.RLIMIT_FSIZE, (p.stat().st_size // 2, resource.RLIM_INFINITY))
_, learn = start_run({params!r})
learn.cbs = sorted([*learn.cbs, FullDisk()], key=lambda cb: cb.order)
try: learn.fit()
except ClimbkitError as e: print('error:', e, flush=True); sys.exit(2)
'''

def test_results_json_write_fails(runs, tmp_path):
    run = copy_base(runs, tmp_path, 'b'); res = run/'results.json'
    out = subprocess.run([sys.executable, '-c', FULL_DISK.format(params={**P, 'out_dir': str(tmp_path), 'resume': str(run)})],
                         capture_output=True, text=True, timeout=300)
    said = f'Could not write {res}: File too large (the previous file, if any, is intact).'
    lines = out.stdout.splitlines()
    assert out.returncode == 2 and lines[-1] == f'error: {said}', out.stdout[-2000:] + out.stderr[-2000:]
    assert any(l.startswith(f'Stopped: failed during epoch 3: ClimbkitError: {said[:-1]}. Best') for l in lines)
    assert any(l.startswith('(also failed while finishing the run: ClimbkitError: Could not write') for l in lines)  # the figure, results.json again
    before = next(l.split()[1] for l in lines if l.startswith('before:'))
    assert sha(res) == before and [r['epoch'] for r in json.loads(res.read_text())['history']] == [1, 2, 3] and not tmp_files(run)
    assert load_checkpoint_file(run/'checkpoints'/'latest.pt')['epoch'] == 3  # saved before the disk filled
    finish_like_ref(run, runs)

def test_ledger_write_fails(tmp_path):
    "record_result (results/NAME.json) and `climbkit-ledger keep` (results/NAME.ipynb), each limited to the size of the file it replaces."
    from climbkit.ledger import ledger_table, record_result, load_result
    folder, table = tmp_path/'results', {'t': ledger_table([{'x': 1}], {'x': ('x', '{}')})}
    path = record_result('demo', 'make results-demo', table, raw=[1, 2], folder=folder)
    before = sha(path)
    write = f'from climbkit.ledger import record_result\nrecord_result("demo", "make results-demo", {table!r}, raw=list(range(3000)), folder={str(folder)!r})'
    out = subprocess.run([sys.executable, '-c', write], capture_output=True, text=True, timeout=120, preexec_fn=limit_files(path.stat().st_size))
    assert out.returncode == 1 and out.stderr.strip().splitlines()[-1] == \
        f'climbkit.core.ClimbkitError: Could not write {path}: File too large (the previous file, if any, is intact).', out.stderr[-2000:]
    assert sha(path) == before and load_result('demo', folder)['raw'] == [1, 2] and not tmp_files(folder)
    subprocess.run([sys.executable, '-c', write], check=True, timeout=120)  # again, with room: written
    assert load_result('demo', folder)['raw'] == list(range(3000))
    small, big, kept = tmp_path/'small.ipynb', tmp_path/'big.ipynb', folder/'demo.ipynb'
    for p, n in ((small, 1), (big, 500)):
        p.write_text(json.dumps({'cells': [{'cell_type': 'markdown', 'source': 'line\n' * n, 'metadata': {}}], 'metadata': {}, 'nbformat': 4, 'nbformat_minor': 5}))
    subprocess.run([str(BIN/'climbkit-ledger'), 'keep', str(small), str(kept)], check=True, timeout=120)
    before = sha(kept)
    out = subprocess.run([str(BIN/'climbkit-ledger'), 'keep', str(big), str(kept)], capture_output=True, text=True, timeout=120,
                         preexec_fn=limit_files(kept.stat().st_size))
    assert out.returncode == 1 and out.stderr == f'climbkit-ledger: Could not write {kept}: File too large (the previous file, if any, is intact).\n'
    assert sha(kept) == before and not tmp_files(folder)

SWEEP_CHILD = '''
import sys, hashlib, resource
import climbkit.sweep as sweep
asked = sweep.suggest
def suggest(trial, space):
    "Trial 1 is made; the record of its parameter meets a full disk after 10 bytes."
    if trial.number == 1:
        journal = sweep.Path({journal!r})
        print('before:', journal.stat().st_size, hashlib.sha256(journal.read_bytes()).hexdigest(), flush=True)
        resource.setrlimit(resource.RLIMIT_FSIZE, (journal.stat().st_size + 10, resource.RLIM_INFINITY))
    return asked(trial, space)
sweep.suggest = suggest
sys.exit(sweep.sweep_cli({argv!r}))
'''

def test_sweep_journal_write_fails(tmp_path):
    "A sweep's journal write is cut off part-way while asking for trial 1; the resumed sweep drops the half record, asks for trial 1's parameter again, runs it, and ends with both trials done once."
    spec = tmp_path/'space.yaml'
    spec.write_text(yaml.safe_dump(dict(task='synthetic', fixed={'epochs': 3, 'n_samples': 512, 'd_in': 32, 'hidden': '32', 'fused': 'false', 'batch_size': 64},
                                        search={'lr': {'log_uniform': [1e-3, 3e-2]}}, trials=2, workers=1, threads=1, runner='script', pruner='none')))
    sweep_dir = tmp_path/'s'; journal = sweep_dir/'study.log'
    child = SWEEP_CHILD.format(journal=str(journal), argv=[str(spec), '--name', 's', '--out_dir', str(tmp_path)])
    out = subprocess.run([sys.executable, '-c', child], capture_output=True, text=True, timeout=300)
    said = f"climbkit-sweep: Could not write the sweep's journal {journal}: File too large (its earlier records are intact; a partly written one is dropped before the next write).\n"
    assert out.returncode == 2 and out.stderr == said, out.stdout[-2000:] + out.stderr[-3000:]
    size, before = next(l.split()[1:] for l in out.stdout.splitlines() if l.startswith('before:'))
    data = journal.read_bytes()
    assert len(data) == int(size) + 10 and hashlib.sha256(data[:int(size)]).hexdigest() == before and not data.endswith(b'\n')
    assert not tmp_files(sweep_dir) and 'trial 0 complete' in out.stdout
    again = subprocess.run([str(BIN/'climbkit-sweep'), '--resume', str(sweep_dir)], capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stdout[-2000:] + again.stderr[-3000:]
    assert f'{journal}: dropped 10 bytes at its end, a record whose write failed part-way; the records before it are intact.' in again.stdout.splitlines()
    assert hashlib.sha256(journal.read_bytes()[:int(size)]).hexdigest() == before
    s = json.loads((sweep_dir/'sweep.json').read_text())
    assert s['counts']['complete'] == 2 and s['counts']['fail'] == 0 and len(s['trials']) == 2, s['counts']
    for t in s['trials']:  # every trial once, with its parameter: none lost, none repeated
        run = sweep_dir/'trials'/f"trial-{t['trial']:03d}"
        assert 1e-3 <= t['params']['lr'] <= 3e-2 and t['evaluations'] == 3 and len(json.loads((run/'attempts.json').read_text())) == 1
        assert [int(float(r['epoch'])) for r in rows(run, ['epoch'])] == [1, 2, 3]

def test_damaged_latest_checkpoint_falls_back(runs, tmp_path):
    "latest.pt truncated (a copy cut short): the resume warns, naming both files, takes the newest readable checkpoint and ends as the uninterrupted run."
    run = copy_base(runs, tmp_path, 'e'); cks = run/'checkpoints'; latest = cks/'latest.pt'
    step = load_checkpoint_file(cks/'epoch_2.pt')['step']
    latest.write_bytes(latest.read_bytes()[:latest.stat().st_size // 3])
    with pytest.warns(ClimbkitWarning) as w: _, learn = start_run({**P, 'out_dir': str(tmp_path), 'resume': str(run)})
    said = str(w[0].message)
    assert said.startswith(f'Checkpoint {latest} cannot be read (truncated or not a PyTorch file): ') and '\n' not in said
    assert said.endswith(f'; resuming from checkpoints/epoch_2.pt (step {step}) instead, the newest readable checkpoint of the run.'), said
    assert (learn.step, learn.epoch) == (step, 2)
    finish_like_ref(run, runs, learn)
    (cks/'epoch_1.pt').write_bytes(b'damaged')  # a checkpoint that `resume` names: that one, or an error
    with pytest.raises(ClimbkitError, match=r'epoch_1\.pt cannot be read'): start_run({**P, 'out_dir': str(tmp_path), 'resume': str(cks/'epoch_1.pt')})
