"""
Input saliency on digits from the exact input Jacobian
======================================================

``est.jacobian(X)`` is the derivative of ``predict_proba`` with respect to
every input pixel, computed exactly in the compiled engine. For a few test
digits the row of the predicted class, shaped 8 x 8 as the image, shows
which pixels would raise (red) or lower (blue) the predicted probability.

    pip install "fastbp[plot]" && python examples/plot_digits_saliency.py
"""

from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from fastbp import MLPClassifier


def main(n_images=6):
    X, y = load_digits(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(X / 16, y, random_state=0)
    clf = MLPClassifier((64,), activation="tanh", max_iter=400,
                        random_state=0).fit(X_train, y_train)
    print(f"test accuracy {clf.score(X_test, y_test):.3f}")
    images = X_test[:n_images]
    predicted = clf.predict(images)
    J = clf.jacobian(images)  # (n_images, 10 classes, 64 pixels)
    index = clf.classes_.searchsorted(predicted)
    saliency = J[range(n_images), index]
    return clf, images, predicted, saliency


def plot(images, predicted, saliency):
    import matplotlib.pyplot as plt
    import numpy as np

    n = len(images)
    fig, axes = plt.subplots(2, n, figsize=(1.8 * n, 4))
    for i in range(n):
        axes[0, i].imshow(images[i].reshape(8, 8), cmap="gray_r")
        axes[0, i].set_title(f"predicted {predicted[i]}")
        limit = np.abs(saliency[i]).max()
        axes[1, i].imshow(saliency[i].reshape(8, 8), cmap="RdBu_r",
                          vmin=-limit, vmax=limit)
    for ax in axes.ravel():
        ax.set_axis_off()
    axes[1, 0].set_title("d p / d pixel", loc="left")
    fig.tight_layout()
    return fig


if __name__ == "__main__":
    plot(*main()[1:])
