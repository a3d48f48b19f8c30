#!/usr/bin/env bash
# Trains the models the app ships, with the project's own command line, and exports each one to
# assets/models/<file>.safetensors (weights + metadata) and <file>.json (readable metadata, with the
# exact command). Run once, offline, from the repository root (about 1 h on 2 CPU cores):
#     ROBUST_DATA_DIR=../shared/data bash assets/models/train_shipped.sh
# A model already in the store ($ROBUST_STORE_DIR) is exported again, not retrained.
set -euo pipefail
PY=${PYTHON:-python}
train() { local file=$1; shift; $PY -m robust_core.train --quiet --export "assets/models/$file.safetensors" "$@"; }

# MNIST, the seed CNN (225,034 parameters)
train mnist_cnn_standard  --dataset mnist --arch cnn --name "CNN · standard"
train mnist_cnn_fgsm_at   --dataset mnist --arch cnn --name "CNN · FGSM-AT ε=0.3" --method fgsm_at \
    --method-kwargs '{"eps": 0.3}' --epochs 5 --batch-size 128 --lr 0.002
train mnist_cnn_gfa_first --dataset mnist --arch cnn --name "CNN · GFA first" --method gfa \
    --method-kwargs '{"lam": 1.0, "layers": "first", "warmup_epochs": 1}' --epochs 5 --batch-size 128 --lr 0.002
train mnist_cnn_gfa_deep  --dataset mnist --arch cnn --name "CNN · GFA deep" --method gfa \
    --method-kwargs '{"lam": 1.0, "layers": "deep", "warmup_epochs": 1}' --epochs 5 --batch-size 128 --lr 0.002
train mnist_cnn_gnr       --dataset mnist --arch cnn --name "CNN · GNR λ=10" --method gnr \
    --method-kwargs '{"lam": 10.0}' --epochs 5 --batch-size 128 --lr 0.002

# Fashion-MNIST, the MLP (784-512-256-10)
train fashion_mlp_standard --dataset fashion_mnist --arch mlp --name "MLP · standard" --epochs 10 --lr 0.002
train fashion_mlp_gfa      --dataset fashion_mnist --arch mlp --name "MLP · GFA deep" --method gfa \
    --method-kwargs '{"lam": 1.0, "layers": "deep", "warmup_epochs": 1}' --epochs 10 --lr 0.002
train fashion_mlp_pgd_at   --dataset fashion_mnist --arch mlp --name "MLP · PGD-AT ε=0.1" --method pgd_at \
    --method-kwargs '{"eps": 0.1, "steps": 10, "eps_ramp": 0.2}' --epochs 10 --lr 0.002

# The long ones: PGD-7 costs 8 forward-backward passes per batch, TRADES-5 costs 7. Step counts and
# epochs are set so that both train in about an hour on 2 CPU cores (Madry et al. used PGD-40 and
# ~80 epochs); the report measures what this buys.
train mnist_cnn_pgd_at    --dataset mnist --arch cnn --name "CNN · PGD-AT ε=0.3" --method pgd_at \
    --method-kwargs '{"eps": 0.3, "steps": 7, "eps_ramp": 0.2}' --epochs 10 --batch-size 128 --lr 0.002
train mnist_cnn_trades    --dataset mnist --arch cnn --name "CNN · TRADES ε=0.3 β=6" --method trades \
    --method-kwargs '{"eps": 0.3, "steps": 5, "eps_ramp": 0.2, "beta": 6.0}' --epochs 6 --batch-size 128 --lr 0.002
