"""Issue 16: Lab works out of the box. Runs live in the project's runs/ whether a notebook's kernel starts in the project
root (make, papermill) or in nbs/ (JupyterLab), generate.ipynb runs unedited from nbs/ after training, and a ClimbkitError
in a notebook shows its one sentence, not a traceback."""
import json, os, shutil, sys, subprocess
from pathlib import Path
import pytest
from conftest import ROOT, TINY, notebook_text
from climbkit.run import start_run

def run_notebook(nb, out, cwd, params=(), env=None):
    "papermill `nb` -> `out` with the kernel's working folder `cwd`; the finished process."
    cmd = [str(Path(sys.executable).parent/'papermill'), str(nb), str(out), '--cwd', str(cwd)]
    for k, v in params: cmd += ['-p', k, str(v)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)

@pytest.fixture(scope='module')
def project(tmp_path_factory):
    "A project as `make train` leaves it: settings.ini, nbs/ with the notebooks, and a grader and generator under runs/."
    proj = tmp_path_factory.mktemp('proj')
    (proj/'settings.ini').write_text('[DEFAULT]\nlib_name = climbkit\n'); (proj/'nbs').mkdir()
    for nb in ('generate.ipynb', 'train.ipynb'): shutil.copy(ROOT/'nbs'/nb, proj/'nbs'/nb)
    small = dict(n_routes=600, threads=1)
    _, g = start_run(task='climb_grade', hidden=16, epochs=2, out_dir=proj/'runs', name='grade-climb-1', **small); g.fit()
    _, c = start_run(task='climb', d_model=32, n_layers=1, n_heads=2, dim_feedforward=64, epochs=2, out_dir=proj/'runs',
                     name='climb-1', **small); c.fit()
    return proj

def kernel_env():
    env = {k: v for k, v in os.environ.items() if k != 'CLIMBKIT_RUNS'}
    return env

def test_generate_runs_unedited_from_nbs(project, tmp_path):
    out = tmp_path/'generate.ipynb'
    p = run_notebook(project/'nbs'/'generate.ipynb', out, cwd=project/'nbs', params=[('n', 4), ('metric_samples', 0)], env=kernel_env())
    assert p.returncode == 0, p.stderr[-3000:]
    text = notebook_text(out)
    assert f"generator: {(project/'runs'/'climb-1').resolve()}" in text and 'grade-climb-1' in text  # found from nbs/, grader too
    nb = json.loads(out.read_text())
    assert any('image/png' in o.get('data', {}) for c in nb['cells'] for o in c.get('outputs', []))  # the routes are drawn

def test_train_from_nbs_writes_to_the_projects_runs(project, tmp_path):
    p = run_notebook(project/'nbs'/'train.ipynb', tmp_path/'t.ipynb', cwd=project/'nbs', env=kernel_env(),
                     params=[(k, v) for k, v in {**TINY, 'epochs': 1, 'grader': 'none', 'name': 'from-lab'}.items()])
    assert p.returncode == 0, p.stderr[-3000:]
    assert (project/'runs'/'from-lab'/'checkpoints'/'best.pt').exists() and not (project/'nbs'/'runs').exists()

def test_a_climbkit_error_shows_one_sentence_in_a_notebook(project, tmp_path):
    out = tmp_path/'bad.ipynb'
    p = run_notebook(project/'nbs'/'train.ipynb', out, cwd=project/'nbs', params=[('epochs', 0)], env=kernel_env())
    assert p.returncode != 0
    nb = json.loads(out.read_text())
    errors = [o for c in nb['cells'] for o in c.get('outputs', []) if o.get('output_type') == 'error']
    assert len(errors) == 1 and errors[0]['ename'] == 'ClimbkitError' and "'epochs'" in errors[0]['evalue']
    assert len(errors[0]['traceback']) == 1 and 'File ' not in errors[0]['traceback'][0]  # the sentence, no traceback

def test_papermill_parses_the_parameters_without_warnings():
    p = subprocess.run([str(Path(sys.executable).parent/'papermill'), '--help-notebook', str(ROOT/'nbs'/'train.ipynb')],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0 and 'Unable to parse' not in p.stdout + p.stderr, (p.stdout + p.stderr)[-2000:]
