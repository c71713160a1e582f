"""Trains the seed's head with Keras itself on convbase's cached features, over several seeds.

Dev-only reference: tells how far Keras' own results move from seed to seed on the same
features, so that convbase's spread can be judged against it. Needs `keras` and a backend
(`jax[cpu]`) in the venv that runs it:

    python scripts/dev/keras_head_seeds.py FEATURES.parquet --seeds 1 2 3 4 5
"""

import argparse
import os
import time

os.environ.setdefault("KERAS_BACKEND", "jax")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402


def split(table, name):
    rows = [i for i, s in enumerate(table.column("split").to_pylist()) if s == name]
    t = table.take(rows)
    x = np.stack(t.column("features").to_numpy(zero_copy_only=False)).astype("float32")
    y = np.asarray(t.column("label").to_pylist(), dtype="float32")
    return x, y


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("features")
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3, 4, 5])
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--history", help="directory for one history CSV per seed")
    args = ap.parse_args()
    table = pq.read_table(args.features)
    xtr, ytr = split(table, "train")
    xva, yva = split(table, "validation")
    xte, yte = split(table, "test")
    print(f"keras {keras.__version__} ({keras.backend.backend()}), "
          f"train {len(ytr)} val {len(yva)} test {len(yte)}, dim {xtr.shape[1]}")
    print("seed,final_val_acc,best_val_acc,test_acc,seconds")
    for seed in args.seeds:
        keras.utils.set_random_seed(seed)
        model = keras.Sequential([
            keras.Input((xtr.shape[1],)),
            keras.layers.Dense(256, activation="relu"),
            keras.layers.Dropout(0.5),
            keras.layers.Dense(1, activation="sigmoid"),
        ])
        model.compile(optimizer=keras.optimizers.RMSprop(learning_rate=2e-5),
                      loss="binary_crossentropy", metrics=["accuracy"])
        start = time.time()
        h = model.fit(xtr, ytr, epochs=args.epochs, batch_size=20,
                      validation_data=(xva, yva), verbose=0)
        secs = time.time() - start
        _, test_acc = model.evaluate(xte, yte, batch_size=20, verbose=0)
        val = h.history["val_accuracy"]
        if args.history:
            os.makedirs(args.history, exist_ok=True)
            with open(os.path.join(args.history, f"seed{seed}.csv"), "w") as out:
                out.write("epoch,loss,acc,val_loss,val_acc\n")
                for e in range(len(val)):
                    out.write(f"{e + 1},{h.history['loss'][e]:.6f},{h.history['accuracy'][e]:.6f},"
                              f"{h.history['val_loss'][e]:.6f},{val[e]:.6f}\n")
        print(f"{seed},{val[-1]:.3f},{max(val):.3f},{test_acc:.3f},{secs:.1f}", flush=True)


if __name__ == "__main__":
    main()
