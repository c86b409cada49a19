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

TINY_FAMILY = '''
"A family defined in a test: learn the mean of noisy samples (one parameter), beside predicting zero."
import torch
from torch import nn
from climbkit.core import positive_check
from climbkit.data import Data, TensorLoader
from climbkit.task import Task, register_task

@register_task
class MeanTask(Task):
    name = 'mean_demo'
    defaults = dict(target=2.5, n_samples=256, epochs=12, batch_size=32, lr=0.1, warmup_steps=0, weight_decay=0.0)
    help = {'target': 'the mean to learn', 'n_samples': 'noisy samples around it'}
    checks = {'n_samples': positive_check}
    def build_data(self, cfg):
        g = torch.Generator().manual_seed(cfg.seed)
        y = cfg.target + 0.1 * torch.randn(cfg.n_samples, 1, generator=g)
        return Data(TensorLoader({'y': y[:-32]}, cfg.batch_size, shuffle=True, seed=cfg.seed), TensorLoader({'y': y[-32:]}, 32))
    def build_model(self, cfg, data): return nn.Linear(1, 1, bias=False)
    def loss(self, model, batch):
        guess = model(torch.ones_like(batch['y']))
        return ((guess - batch['y']) ** 2).mean(), len(batch['y'])
    def baselines(self, data): return {'zero': float((data.valid.tensors['y'] ** 2).mean())}
'''

def test_a_family_defined_here_trains_through_train_ipynb(tmp_path, monkeypatch):
    (tmp_path/'mean_family.py').write_text(TINY_FAMILY)
    monkeypatch.setenv('CLIMBKIT_TASKS', 'mean_family')
    monkeypatch.setenv('PYTHONPATH', str(tmp_path) + os.pathsep + os.environ.get('PYTHONPATH', ''))
    out = tmp_path/'train.ipynb'
    p = papermill(out, {'task': 'mean_demo', 'target': 1.5, 'threads': 1, 'out_dir': tmp_path/'runs', 'name': 'm'})
    res = json.loads((tmp_path/'runs'/'m'/'results.json').read_text())
    assert res['task'] == 'mean_demo' and res['best_valid_loss'] < 0.05 < res['baselines']['zero']
    cfg = json.loads((tmp_path/'runs'/'m'/'config.json').read_text())
    assert cfg['target'] == 1.5 and 'the mean to learn' in notebook_text(out)  # its parameter taken, and shown with its meaning
    assert (tmp_path/'runs'/'m'/'checkpoints'/'best.pt').exists() and 'Unable to parse' not in p.stderr
