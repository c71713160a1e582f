"""The seed's experiment as the book runs it (Deep Learning with Python, 1st ed., 5.3.1: fast
feature extraction without data augmentation), in Keras 3, on the demo data and the same
real Keras ImageNet VGG16 weights convbase uses, timed stage by stage.

Dev-only reference: it tells what the Keras experiment costs on this machine, so that
convbase's main command can be compared with it in one sitting. The code follows the book:
`ImageDataGenerator(rescale=1/255).flow_from_directory(..., target_size=(150, 150),
batch_size=20, class_mode='binary')` (nearest resize), `conv_base.predict` per batch, then
Flatten(8192) -> Dense(256, relu) -> Dropout(0.5) -> Dense(1, sigmoid), RMSprop(2e-5), binary
cross-entropy, 30 epochs, batch 20. The only change: the weights come from convbase's
safetensors file (torchvision names, OIHW) instead of Keras' download, which is not
reachable offline; they are the same Keras ImageNet weights.

Needs tensorflow (or jax) and keras, safetensors, pillow, scipy:

    python scripts/dev/keras_seed.py data/demo data/weights/vgg16-keras-imagenet.safetensors
"""

import argparse
import json
import os
import time

start = time.time()
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import keras  # noqa: E402
import numpy as np  # noqa: E402
# Keras 3 keeps the book's generator under its legacy tree (tf.keras exposes it too).
from keras.src.legacy.preprocessing.image import ImageDataGenerator  # noqa: E402
from safetensors.numpy import load_file  # noqa: E402

# torchvision's indices of the 13 convs, in Keras' layer order.
TORCH_CONVS = [0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28]


def conv_base_with(weights_path):
    base = keras.applications.VGG16(weights=None, include_top=False, input_shape=(150, 150, 3))
    tensors = load_file(weights_path)
    convs = [layer for layer in base.layers if isinstance(layer, keras.layers.Conv2D)]
    for layer, i in zip(convs, TORCH_CONVS, strict=True):
        kernel = tensors[f"features.{i}.weight"].transpose(2, 3, 1, 0)  # OIHW -> HWIO
        layer.set_weights([kernel, tensors[f"features.{i}.bias"]])
    return base


def extract_features(conv_base, datagen, directory, sample_count, batch_size=20):
    features = np.zeros(shape=(sample_count, 4, 4, 512))
    labels = np.zeros(shape=(sample_count))
    generator = datagen.flow_from_directory(
        directory, target_size=(150, 150), batch_size=batch_size, class_mode="binary")
    i = 0
    for inputs_batch, labels_batch in generator:
        features_batch = conv_base.predict(inputs_batch, verbose=0)
        features[i * batch_size:(i + 1) * batch_size] = features_batch
        labels[i * batch_size:(i + 1) * batch_size] = labels_batch
        i += 1
        if i * batch_size >= sample_count:
            break
    return features.reshape(sample_count, 4 * 4 * 512), labels


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("data", help="data set root with train/, validation/, test/ class folders")
    ap.add_argument("weights", help="convbase's VGG16 safetensors (Keras ImageNet weights)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--epochs", type=int, default=30)
    args = ap.parse_args()
    keras.utils.set_random_seed(args.seed)
    conv_base = conv_base_with(args.weights)
    datagen = ImageDataGenerator(rescale=1.0 / 255)
    counts = {s: sum(len(files) for _, _, files in os.walk(os.path.join(args.data, s)))
              for s in ("train", "validation", "test")}
    t = time.time()
    data = {s: extract_features(conv_base, datagen, os.path.join(args.data, s), n)
            for s, n in counts.items()}
    extract_s = time.time() - t

    model = keras.Sequential([
        keras.Input((4 * 4 * 512,)),
        keras.layers.Dense(256, activation="relu"),
        keras.layers.Dropout(0.5),
        keras.layers.Dense(1, activation="sigmoid"),
    ])
    model.compile(optimizer=keras.optimizers.RMSprop(learning_rate=2e-5),
                  loss="binary_crossentropy", metrics=["acc"])
    t = time.time()
    history = model.fit(*data["train"], epochs=args.epochs, batch_size=20,
                        validation_data=data["validation"], verbose=0)
    train_s = time.time() - t
    _, test_acc = model.evaluate(*data["test"], batch_size=20, verbose=0)
    print(json.dumps({
        "keras": keras.__version__,
        "backend": keras.backend.backend(),
        "images": sum(counts.values()),
        "extract_s": round(extract_s, 1),
        "images_per_s": round(sum(counts.values()) / extract_s, 2),
        "train_s": round(train_s, 1),
        "val_acc": round(float(history.history["val_acc"][-1]), 4),
        "test_acc": round(float(test_acc), 4),
        "total_s": round(time.time() - start, 1),
    }))


if __name__ == "__main__":
    main()
