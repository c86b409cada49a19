"Issue 4 (in progress): LAMB, bf16 optimizer state and Lookahead selected from the train notebook, checkpointed and resumed."
import json
import torch
from conftest import TINY, papermill, notebook_text

def test_lamb_lookahead_bf16_state_train_and_resume(tmp_path):
    runs = tmp_path/'runs'
    papermill(tmp_path/'a.ipynb', {**TINY, 'name': 'la', 'out_dir': runs, 'optimizer': 'lamb', 'optimizer_state': 'bf16',
                                   'lookahead': True, 'lookahead_k': 3})
    ck = torch.load(runs/'la'/'checkpoints'/'latest.pt', weights_only=False)
    assert set(ck['optimizer']) >= {'base', 'slow', 'counter'} and ck['optimizer']['k'] == 3
    moments = [st['exp_avg'] for st in ck['optimizer']['base']['state'].values()]
    assert moments and all(m.dtype == torch.bfloat16 for m in moments)
    # resumed without naming the optimizer again: it comes from the run, so its state loads
    small = {k: v for k, v in TINY.items() if k not in ('d_model', 'n_layers', 'n_heads', 'dim_feedforward')}
    papermill(tmp_path/'b.ipynb', {**small, 'resume': True, 'out_dir': runs, 'epochs': 3})
    after = torch.load(runs/'la'/'checkpoints'/'latest.pt', weights_only=False)
    assert after['epoch'] == 3 and after['optimizer']['counter'] > ck['optimizer']['counter']
    cfg = json.loads((runs/'la'/'config.json').read_text())
    assert cfg['optimizer'] == 'lamb' and cfg['lookahead'] is True and cfg['optimizer_state'] == 'bf16'
    assert 'Resuming' in notebook_text(tmp_path/'b.ipynb')

def test_bad_optimizer_parameters(tmp_path):
    p = papermill(tmp_path/'x.ipynb', {**TINY, 'optimizer': 'adamw', 'optimizer_state': 'bf16', 'out_dir': tmp_path}, check=False)
    assert p.returncode != 0 and "needs optimizer='lamb'" in p.stdout + p.stderr
    assert not any(tmp_path.glob('climb-*'))  # stopped before a run folder was made
    p = papermill(tmp_path/'y.ipynb', {**TINY, 'optimizer': 'rmsprop', 'out_dir': tmp_path}, check=False)
    assert p.returncode != 0 and "Parameter 'optimizer' must be one of 'adamw', 'adam', 'sgd', 'lamb'" in p.stdout + p.stderr

def test_dynamic_freezing_from_the_train_notebook(tmp_path):
    runs = tmp_path/'runs'
    params = {**TINY, 'n_layers': 3, 'epochs': 3, 'name': 'fz', 'out_dir': runs, 'freeze': True, 'freeze_every': 3,
              'freeze_threshold': 0.95, 'freeze_patience': 1}
    papermill(tmp_path/'a.ipynb', params)
    text = notebook_text(tmp_path/'a.ipynb')
    assert 'froze blocks.0' in text
    ck = torch.load(runs/'fz'/'checkpoints'/'latest.pt', weights_only=False)
    frozen = ck['callbacks']['FreezeCallback']['frozen']
    assert frozen[0] == 'blocks.0' and 'blocks.2' not in frozen  # front first; never the last block
    res = json.loads((runs/'fz'/'results.json').read_text())
    assert [e['layer'] for e in res['freeze_events']] == frozen
    rows = (runs/'fz'/'metrics.csv').read_text().splitlines()
    assert rows[0].split(',').count('frozen_layers') == 1 and rows[-1].split(',')[rows[0].split(',').index('frozen_layers')] == str(len(frozen))

def test_synthetic_task_with_every_aid(tmp_path):
    "The report's setting, scaled down: LAMB with bf16 state, Lookahead, freezing, accumulation, fused layers."
    runs = tmp_path/'runs'
    papermill(tmp_path/'s.ipynb', {'task': 'synthetic', 'n_samples': 2000, 'd_in': 64, 'hidden': '128,128,64', 'epochs': 10,
                                   'optimizer_state': 'bf16', 'lookahead': True, 'freeze': True, 'freeze_every': 5,
                                   'grad_accum': 2, 'fused': True, 'threads': 1, 'out_dir': runs, 'name': 's'})
    res = json.loads((runs/'s'/'results.json').read_text())
    assert res['valid_accuracy'] > res['majority_accuracy'] + 0.05  # few steps: every aid that slows early learning is on
    assert res['final']['valid_loss'] < res['baselines']['class prior']
    text = notebook_text(tmp_path/'s.ipynb')
    assert 'validation accuracy' in text and 'valid_accuracy' in (runs/'s'/'metrics.csv').read_text()
