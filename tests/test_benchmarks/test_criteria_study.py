"""benchmarks/criteria.py end to end at its smallest setting, so that the
study cannot rot: data, pre-training, dense training, prune, zero-shot
evaluation, plain and distilled fine-tuning, SIRFP's in-training schedule,
tables and plot."""
import json
import os.path as osp

from tests.helpers import load_script


def test_smallest_setting_end_to_end(tmp_path):
    study = load_script('benchmarks', 'criteria')
    out = str(tmp_path / 'docs' / 'criteria')
    args = ['--work-dir', str(tmp_path / 'cache'), '--out', out,
            '--size', '32', '--num-images', '8', '--num-cls-images', '40',
            '--cls-epochs', '1', '--cls-batch', '8', '--dense-iters', '2',
            '--finetune-iters', '1', '--reductions', '0.5', '--seeds', '0',
            '--criteria', 'sirfp', 'sirfp-schedule', '--schedule-iters', '1',
            '--second-model', 'none']
    assert study.main(args) == 0
    data = json.load(open(out + '.json'))
    records = data['records']
    assert {(r['criterion'], r['distill']) for r in records} == {
        ('sirfp', False), ('sirfp', True), ('sirfp-schedule', False)}
    for record in records:
        assert record['model'] == 'deeplabv3_r18'
        assert record['flops_reduction'] == 0.5 and record['seed'] == 0
        assert abs(record['achieved_reduction'] - 0.5) <= 0.005
        for key in ('miou_dense', 'miou_pruned', 'miou_finetuned'):
            if record[key] is not None:
                assert 0 <= record[key] <= 100
    # Pruned in training: two steps of one iteration each, then the
    # fine-tune; no zero-shot figure.
    scheduled = next(r for r in records if r['criterion'] == 'sirfp-schedule')
    assert scheduled['miou_pruned'] is None
    assert scheduled['finetune_iters'] == 3
    assert scheduled['miou_finetuned'] is not None
    assert data['dense']['deeplabv3_r18']['iters'] == 2
    # The dense reference after the same fine-tune as the pruned models.
    assert 0 <= data['dense']['deeplabv3_r18']['miou_finetuned_1'] <= 100
    table = open(out + '.md').read()
    assert 'python benchmarks/criteria.py' in table
    assert '| sirfp | 0.5' in table
    assert '| sirfp-schedule | 0.5 (got 0.5' in table
    assert '| – | ' in table  # the schedule's zero-shot cell
    # Compute stated per thread: the dense training and the records.
    assert all(r['cpu_seconds'] > 0 and r['threads'] >= 1 for r in records)
    assert 'dense training' in table and 'the 3 runs that record it' in table
    assert osp.getsize(out + '.png') > 10000
    assert all(r['precision'] == 'fp32' for r in records)
    assert 'Wall time on this work dir:' in table
    # A rerun resumes from the cache: nothing is run again; the wall time
    # adds up over both runs.
    assert study.main(args) == 0
    assert len(json.load(open(out + '.json'))['records']) == 3
    timing = json.load(open(tmp_path / 'cache' / 'timing.json'))
    assert len(timing['segments']) == 2
    assert all(seg['seconds'] > 0 for seg in timing['segments'])
    assert 'over 2 runs of the script' in open(out + '.md').read()
    # A cache trained in fp32 is not mixed with bf16 runs.
    assert study.main(args + ['--precision', 'bf16']) == 2
    assert len(json.load(open(tmp_path / 'cache' / 'timing.json'))[
        'segments']) == 2


def test_ablations_run_at_half_on_the_first_model_unless_named():
    study = load_script('benchmarks', 'criteria')
    models = ['deeplabv3_r18', 'pspnet_r18']
    args = study.parse_args([])
    plan = study.planned_runs(args, ['l1', 'sirfp-no-bias-comp'], models)
    assert plan == [('deeplabv3_r18', 0.3, 'l1'), ('deeplabv3_r18', 0.5, 'l1'),
                    ('deeplabv3_r18', 0.5, 'sirfp-no-bias-comp'),
                    ('deeplabv3_r18', 0.7, 'l1'), ('pspnet_r18', 0.5, 'l1')]
    named = study.parse_args(['--criteria', 'sirfp-no-bias-comp'])
    assert study.planned_runs(named, named.criteria, models) == [
        ('deeplabv3_r18', r, 'sirfp-no-bias-comp') for r in (0.3, 0.5, 0.7)
    ] + [('pspnet_r18', 0.5, 'sirfp-no-bias-comp')]
