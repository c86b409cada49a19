"""Issue 16: a new family added from the template (nbs/50_template.ipynb) trains through train.ipynb without editing it.
The family's module is built here from the template's `# family` cells and kept outside the package (CLIMBKIT_TASKS)."""
import json, os, sys, subprocess
from pathlib import Path
from conftest import ROOT, papermill, notebook_text

def family_module(dst:Path) -> Path:
    "The template notebook's `# family` cells as a module file."
    nb = json.loads((ROOT/'nbs'/'50_template.ipynb').read_text())
    cells = [''.join(c['source']) for c in nb['cells'] if c['cell_type'] == 'code' and ''.join(c['source']).startswith('# family')]
    assert len(cells) >= 2, 'the template lost its # family cells'
    dst.write_text('\n\n'.join(cells) + '\n')
    return dst

def test_a_family_from_the_template_trains_through_train_ipynb(tmp_path, monkeypatch):
    family_module(tmp_path/'my_sine_family.py')
    monkeypatch.setenv('CLIMBKIT_TASKS', 'my_sine_family')
    monkeypatch.setenv('PYTHONPATH', str(tmp_path) + os.pathsep + os.environ.get('PYTHONPATH', ''))
    out = tmp_path/'train.ipynb'
    papermill(out, {'task': 'sine', 'epochs': 12, 'threads': 1, 'out_dir': tmp_path/'runs', 'name': 'sine'})
    res = json.loads((tmp_path/'runs'/'sine'/'results.json').read_text())
    assert res['task'] == 'sine' and res['best_valid_loss'] < 0.25 * res['baselines']['predict the mean']
    assert res['below_best_baseline']['predict the mean'] > 0 and res['max_error_vs_truth'] < 0.5  # the showcase's figure
    assert (tmp_path/'runs'/'sine'/'figures'/'fit.png').exists() and 'n_points' in notebook_text(out)  # its parameters shown

def test_a_broken_family_module_is_named(tmp_path, monkeypatch):
    (tmp_path/'broken_family.py').write_text('import a_module_that_is_not_there\n')
    monkeypatch.setenv('CLIMBKIT_TASKS', 'broken_family')
    monkeypatch.syspath_prepend(str(tmp_path))
    from climbkit.core import raises
    from climbkit.task import known_tasks
    assert "CLIMBKIT_TASKS names module 'broken_family', which cannot be imported" in raises(known_tasks)
