# Two commands set everything up on a fresh machine:
#   make demo   prune DeepLabV3 R50-D8 with SIRFP on generated data, print the tables
#   make test   run the test suite
# Both create .venv in the checkout and install what is missing; a second run
# installs nothing. mmcv 2.1.0 is built from source (about 17 min on 2 cores)
# unless PIP_FIND_LINKS offers a wheel.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.installed
DEMO_DATA := data/demo
DEMO_CONFIG := configs/deeplabv3_voc_sirfp.py

.PHONY: demo test install clean

install: $(STAMP)

$(STAMP): setup.py requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q wheel
	# CPU torch first: an unpinned torch would pull a CUDA build.
	$(PIP) install -q torch==2.13.0
	# torch asks for setuptools>=77, which has no pkg_resources; mmcv's build
	# and mmengine's `mmseg::` config lookup need it, torch only to compile
	# extensions. pip warns about the downgrade; the warning is expected.
	$(PIP) install -q 'setuptools<70'
	$(PIP) install -q mmengine==0.10.7
	# mmcv full: a wheel from PIP_FIND_LINKS if offered, else a source build.
	$(PIP) install -q --no-build-isolation mmcv==2.1.0
	$(PIP) install -q mmsegmentation==1.2.2 numpy prettytable ftfy regex pytest
	# The deploy extra: tools/export_onnx.py and its test.
	$(PIP) install -q onnx onnxruntime
	# torch-pruning needs only torch and numpy; resolving its torch would
	# upgrade setuptools again.
	$(PIP) install -q --no-deps torch-pruning==1.6.1
	$(PIP) install -q --no-build-isolation --no-deps -e .
	$(PY) -c "import pkg_resources, mmcv.ops, mmseg, torch_pruning"
	touch $(STAMP)

$(DEMO_DATA)/ImageSets/Segmentation/train.txt: | $(STAMP)
	$(PY) tools/make_demo_data.py $(DEMO_DATA) --num 40 --seed 0

demo: $(STAMP) $(DEMO_DATA)/ImageSets/Segmentation/train.txt
	$(PY) tools/prune.py $(DEMO_CONFIG) --data-root $(DEMO_DATA) \
		--work-dir work_dirs/demo \
		--cfg-options pruning.calibration_batches=4 train_dataloader.batch_size=1
	$(PY) tools/get_flops.py work_dirs/demo/pruned_config.py \
		--checkpoint work_dirs/demo/pruned.pth --latency

test: $(STAMP)
	$(PY) -m pytest tests -q

clean:
	rm -rf $(VENV) work_dirs $(DEMO_DATA)
