"""The per-layer latency table: what each layer sees, reading between grid
points, and the cache on disk."""
import json
import os
import os.path as osp

import pytest
import torch

from mmseg_prune.analysis import LatencyTable, layer_calls

from tests.helpers import conv_call

SIZE = (64, 64)


def test_layer_calls_record_what_each_layer_sees(small_model):
    calls = layer_calls(small_model, SIZE, ['backbone.stem.0',
                                            'backbone.layer4.1.conv1',
                                            'decode_head.conv_seg'])
    (stem, ), (deep, ), (seg, ) = calls.values()
    assert stem.kind == 'conv' and stem.spec[-1] == (64, 64)
    assert (stem.in_channels, stem.out_channels) == (3, 32)
    assert stem.spec[1] == (2, 2)  # stride
    # ResNetV1c-D8: 1/8 of the input, dilation 4 in the last stage.
    assert deep.spec[-1] == (8, 8) and deep.spec[3] == (4, 4)
    assert (seg.in_channels, seg.out_channels) == (128, 19)


def test_table_reads_between_grid_points(tmp_path, monkeypatch):
    timed = []

    def cubic(self, call, cin, cout):
        timed.append((cin, cout))
        return cin * cin * cout / 1000

    monkeypatch.setattr(LatencyTable, '_time', cubic)
    table = LatencyTable(cache_dir=str(tmp_path))
    call = conv_call(64, 64, (16, 16))
    # 64 channels: grid points every 8; 20 lies halfway from 16 to 24.
    assert table.latency(call, 20, 64) == pytest.approx(
        0.5 * 16 * 16 * 64 / 1000 + 0.5 * 24 * 24 * 64 / 1000)
    assert sorted(timed) == [(16, 64), (24, 64)]
    # Below the first grid point the first point is read.
    assert table.latency(call, 3, 64) == pytest.approx(8 * 8 * 64 / 1000)
    table.save()
    timed.clear()
    again = LatencyTable(cache_dir=str(tmp_path))
    assert again.path == table.path and osp.isfile(again.path)
    assert again.latency(call, 20, 64) == table.latency(call, 20, 64)
    assert timed == [] and again.measured == 0


def test_a_broken_table_file_is_measured_again(tmp_path):
    table = LatencyTable(cache_dir=str(tmp_path))
    call = conv_call(8, 8, (8, 8))
    os.makedirs(osp.dirname(table.path))
    with open(table.path, 'w') as f:
        f.write('{"half a')
    table = LatencyTable(cache_dir=str(tmp_path))
    assert table.entries == {}
    assert table.entry(call, 8, 8) > 0  # really timed
    table.save()
    assert len(json.load(open(table.path))) == 1
    assert 'threads' in osp.basename(table.path)
    assert torch.__version__.split('+')[0] in osp.basename(table.path)
