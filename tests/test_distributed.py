"Issue 5: the climbkit-train command, and data-parallel training in 2 processes (torchrun, gloo) against 1 process."
import csv, os, sys, time, signal, subprocess, json
from pathlib import Path
import pytest
from climbkit.learner import load_checkpoint_file

BIN = Path(sys.executable).parent
# no dropout of either kind (the model's, or the grade's): one process with batch 32 must do the same arithmetic as two with 16
ARGS = dict(n_routes=3000, d_model=32, n_layers=2, n_heads=2, dim_feedforward=64, dropout=0, grade_dropout=0, epochs=3, precision='fp32',
            threads=1, grader='none', metric_samples=2, guidance_sweep='', warmup_steps=5, checkpoint_every=5)

def cli(out_dir, name, processes=1, **kw):
    "The command line of a climbkit-train run, under torchrun for several processes."
    args = [a for k, v in {**ARGS, 'out_dir': out_dir, 'name': name, **kw}.items() for a in (f'--{k}', str(v))]
    if processes == 1: return [str(BIN/'climbkit-train'), *args]
    return [str(BIN/'torchrun'), '--nproc_per_node', str(processes), '--no-python', str(BIN/'climbkit-train'), *args]

def run(cmd):
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env={**os.environ, 'OMP_NUM_THREADS': '1'})
    assert p.returncode == 0, f'{cmd}\n{p.stdout[-2000:]}\n{p.stderr[-3000:]}'
    return p

def metrics(run_dir):
    with open(run_dir/'metrics.csv') as f: return list(csv.DictReader(f))

def test_two_processes_train_as_one_with_twice_the_batch(tmp_path):
    run(cli(tmp_path, 'one', batch_size=32))
    run(cli(tmp_path, 'two', processes=2, batch_size=16))
    one, two = metrics(tmp_path/'one'), metrics(tmp_path/'two')
    assert [r['step'] for r in one] == [r['step'] for r in two] and [r['train_items'] for r in one] == [r['train_items'] for r in two]
    for a, b in zip(one, two):  # the same global batches, the same token-weighted mean: equal up to summation order
        for k in ('train_loss', 'valid_loss'): assert abs(float(a[k]) - float(b[k])) < 1e-5 * float(a[k]), (k, a[k], b[k])
    assert json.loads((tmp_path/'two'/'config.json').read_text())['processes'] == 2
    assert json.loads((tmp_path/'two'/'results.json').read_text())['epochs'] == 3  # written once, by rank 0

def test_two_processes_stop_on_sigterm_and_resume_exactly(tmp_path):
    run(cli(tmp_path, 'ref', processes=2, batch_size=16))
    proc = subprocess.Popen(cli(tmp_path, 'cut', processes=2, batch_size=16), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True, env={**os.environ, 'OMP_NUM_THREADS': '1'}, start_new_session=True)
    latest, t_end = tmp_path/'cut'/'checkpoints'/'latest.pt', time.time() + 120
    while not latest.exists():
        assert proc.poll() is None and time.time() < t_end, proc.stderr.read()[-3000:]
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGTERM)  # as a scheduler stops a job: every process gets it
    proc.wait(timeout=120)
    ck = load_checkpoint_file(latest)
    assert ck['epoch'] < 3  # it stopped early, with a checkpoint
    run(cli(tmp_path, 'cut', processes=2, batch_size=16, resume=tmp_path/'cut'))
    keys = ('epoch', 'step', 'train_items', 'train_loss', 'valid_loss', 'lr')
    assert [{k: r[k] for k in keys} for r in metrics(tmp_path/'cut')] == [{k: r[k] for k in keys} for r in metrics(tmp_path/'ref')]

def test_cli_reports_bad_parameters(tmp_path):
    p = subprocess.run(cli(tmp_path, 'bad', epochs='fifty'), capture_output=True, text=True, timeout=120)
    assert p.returncode == 2 and "climbkit-train: Parameter 'epochs'" in p.stderr and 'fifty' in p.stderr
    assert not (tmp_path/'bad').exists()
    p = subprocess.run([str(BIN/'climbkit-train'), '--learning_rate', '0.1'], capture_output=True, text=True, timeout=120)
    assert p.returncode == 2 and "did you mean 'lr'" in p.stderr
