"Bad input stops a run with one clear sentence, and never touches what an earlier run saved."
import hashlib, json
from pathlib import Path
import pytest
from climbkit.core import ClimbkitError
from climbkit.run import start_run
from conftest import TINY, papermill, notebook_text

QUIET = {k: v for k, v in TINY.items() if k not in ('samples_per_grade', 'sample_grades')}

def folder_state(d:Path) -> dict:
    "Every file under `d` with its content hash."
    return {str(f.relative_to(d)): hashlib.sha256(f.read_bytes()).hexdigest() for f in sorted(d.rglob('*')) if f.is_file()}

@pytest.fixture(scope='module')
def finished_run(tmp_path_factory):
    "A small finished run that later, failing runs must leave alone."
    out = tmp_path_factory.mktemp('runs')
    _, learn = start_run({**QUIET, 'out_dir': out, 'name': 'done'}); learn.fit()
    return out, out/'done'

def write(p:Path, text:str) -> Path: p.write_text(text); return p

@pytest.mark.parametrize('params, message', [
    ({'bogus': 1}, "Unknown parameter 'bogus'"),
    ({'epoch': 3}, "did you mean 'epochs'"),
    ({'task': 'nope'}, "Unknown task 'nope'; expected one of: climb"),
    ({'epochs': 0}, "Parameter 'epochs' must be a positive integer, got 0"),
    ({'epochs': -2}, "Parameter 'epochs' must be a positive integer"),
    ({'batch_size': 'big'}, "Parameter 'batch_size' must be int"),
    ({'precision': 'fp16'}, "Parameter 'precision' must be one of 'auto', 'bf16', 'fp32'"),
    ({'d_model': 30, 'n_heads': 4}, "'d_model' (30) must be divisible by 'n_heads' (4)"),
    ({'data': 'no/such/file.json'}, "Parameter 'data' names"),
])
def test_bad_parameters(tmp_path, params, message):
    with pytest.raises(ClimbkitError) as e: start_run({**QUIET, 'out_dir': tmp_path/'runs', **params})
    assert message in str(e.value)
    assert not (tmp_path/'runs').exists() or not any((tmp_path/'runs').iterdir())  # nothing was created

@pytest.mark.parametrize('content, message', [
    ('', 'is empty'),
    ('this is not json', 'neither JSON nor JSON lines'),
    ('[{"title": "a song", "year": 1999}]', 'no record is in a known route format'),
    ('{"tracks": [1, 2]}', "expected a list of records or an object with one under 'data'"),
    ('[{"Grade": "9Z", "Moves": ["A5", "B18"]}]', "every record was rejected; first: record 0: grade '9Z'"),
])
def test_bad_data_files(tmp_path, content, message):
    f = write(tmp_path/'routes.json', content)
    with pytest.raises(ClimbkitError) as e: start_run({**QUIET, 'out_dir': tmp_path/'runs', 'data': f})
    assert message in str(e.value) and str(f) in str(e.value)

def test_malformed_records_are_counted_and_reported(tmp_path, capsys):
    good = [{'Grade': '6B+', 'Moves': ['C3', f'{c}{r}', 'D18']} for c in 'ABCDEFGHIJK' for r in range(5, 16)]
    bad = [{'Grade': '6B+', 'Moves': ['C3', 'Q9', 'D18']}, {'Moves': ['C3', 'D9', 'D18']}, 'not a route']
    f = write(tmp_path/'mixed.json', json.dumps(good[:60] + bad + good[60:]))
    _, learn = start_run({**QUIET, 'out_dir': tmp_path/'runs', 'data': f, 'epochs': 1})
    out = capsys.readouterr().out
    assert f'{f}: {len(good)} routes from {len(good) + 3} records; 3 rejected' in out
    assert "record 60: hold 'Q9' is not on the board" in out and "record 61: no 'Grade'" in out
    assert "record 62: expected an object, got str" in out
    assert learn.data.info['report'].rejected[0][0] == 60

def test_existing_run_folder_is_never_reused(finished_run):
    out, run = finished_run
    before = folder_state(run)
    with pytest.raises(ClimbkitError, match='already holds a run; pass resume=True'): start_run({**QUIET, 'out_dir': out, 'name': 'done'})
    assert folder_state(run) == before

def test_checkpoint_of_another_shape(finished_run):
    out, run = finished_run
    before = folder_state(run)
    with pytest.raises(ClimbkitError) as e: start_run({**QUIET, 'out_dir': out, 'resume': run, 'd_model': 64, 'n_heads': 2})
    assert 'was saved from a different model: d_model=32 (this run: 64)' in str(e.value) and 'latest.pt' in str(e.value)
    assert folder_state(run) == before

def test_corrupt_or_foreign_checkpoint(finished_run, tmp_path):
    out, run = finished_run
    bad = tmp_path/'runs'/'bad'; (bad/'checkpoints').mkdir(parents=True)
    (bad/'checkpoints'/'latest.pt').write_bytes((run/'checkpoints'/'latest.pt').read_bytes()[:5000])  # truncated by a crash
    with pytest.raises(ClimbkitError, match=r'latest.pt cannot be read \(truncated or not a PyTorch file\)'):
        start_run({**QUIET, 'out_dir': tmp_path/'runs', 'resume': bad})
    import torch; torch.save({'weights': torch.ones(2)}, bad/'checkpoints'/'latest.pt')
    with pytest.raises(ClimbkitError, match='is not a climbkit checkpoint'): start_run({**QUIET, 'out_dir': tmp_path/'runs', 'resume': bad})
    with pytest.raises(ClimbkitError, match='no run with checkpoints/latest.pt was found'):
        start_run({**QUIET, 'out_dir': tmp_path/'empty', 'resume': True})

def test_papermill_reports_unknown_parameter_by_name(tmp_path):
    p = papermill(tmp_path/'bad.ipynb', {**TINY, 'out_dir': tmp_path/'runs', 'learning_rate': 0.1}, check=False)
    assert p.returncode != 0
    text = notebook_text(tmp_path/'bad.ipynb')
    assert "Unknown parameter 'learning_rate'" in text
    assert not (tmp_path/'runs').exists()
