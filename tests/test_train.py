"End-to-end: the train notebook run by papermill and its run folder (resuming and the real MoonBoard file: tests/test_docs_commands.py runs the documented commands)."
import json, csv
from conftest import TINY, papermill, notebook_text

def test_papermill_run_leaves_a_complete_run_folder(tmp_path):
    out = tmp_path/'runs'/'tiny'/'train.ipynb'; out.parent.mkdir(parents=True)
    p = papermill(out, {**TINY, 'name': 'tiny', 'out_dir': tmp_path/'runs', 'save_every': 1})
    run = tmp_path/'runs'/'tiny'
    names = {str(f.relative_to(run)) for f in run.rglob('*') if f.is_file()}
    for f in ['train.ipynb', 'config.json', 'metrics.csv', 'results.json', 'checkpoints/best.pt', 'checkpoints/latest.pt',
              'checkpoints/epoch_1.pt', 'checkpoints/epoch_2.pt', 'figures/loss.png', 'figures/samples.png']:
        assert f in names, f
    assert any(n.startswith('tb/events.out.tfevents') for n in names)
    rows = list(csv.DictReader((run/'metrics.csv').open()))
    assert [r['epoch'] for r in rows] == ['1', '2'] and all(float(r['valid_loss']) > 0 for r in rows)
    res = json.loads((run/'results.json').read_text())
    assert res['epochs'] == 2 and set(res['baselines']) == {'unigram', 'bigram'} and res['hardware']['available_cores'] >= 1
    assert json.loads((run/'config.json').read_text())['d_model'] == 32
    # progress in the rendered notebook and the log: plain lines, not a widget frozen at 0%
    text, raw = notebook_text(out), out.read_text()
    assert 'epoch 1/2  train_loss' in text and 'epoch 2/2  train_loss' in text and 'epoch 1/2  train_loss' in p.stderr + p.stdout
    assert 'widget-view+json' not in raw
    assert 'unigram' in text and 'bigram' in text  # the baselines are printed beside the model
    assert 'profile: set-up data' in text and 'projected: 2 epochs' in text  # the run measured itself
    assert res['profile']['items_per_s'] > 0 and res['profile']['includes_validation']

def test_interactive_mode_shows_a_live_bar_and_plot(tmp_path, monkeypatch):
    "What JupyterLab gets (forced here, since papermill is detected otherwise): a tqdm widget and a redrawn loss plot."
    monkeypatch.setenv('CLIMBKIT_PROGRESS', 'bar')
    out = tmp_path/'lab.ipynb'
    papermill(out, {**TINY, 'out_dir': tmp_path/'runs'})
    nb = json.loads(out.read_text())
    kinds = [k for c in nb['cells'] for o in c.get('outputs', []) for k in o.get('data', {})]
    assert 'application/vnd.jupyter.widget-view+json' in kinds  # the progress bar
    train_cell = next(c for c in nb['cells'] if 'learn.fit()' in ''.join(c['source']))
    assert any('image/png' in o.get('data', {}) for o in train_cell['outputs'])  # the live loss plot
