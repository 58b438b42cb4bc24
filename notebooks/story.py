# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown] lang="en"
# # pneumoscope, the whole story
#
# A walk through the project a learner would take first: the data, why it is split by child, a first
# small network trained here in about a minute, the model the project ships, the shortcut this data
# set offers and how the shipped model avoids it, predictions with their explanations, the decision
# threshold, the web page, and what the model must never be used for.
#
# **Research and education only. Not a medical device.**
#
# Every number and every figure below is computed when the notebook runs, with the project's own
# public API (`import pneumoscope`); nothing is read from `docs/`. It runs top to bottom in a few
# minutes on two CPU cores. It needs the data beside the repository (`../shared/data`, or set
# `PNEUMOSCOPE_DATA`); `make notebook` opens it in JupyterLab.
#
# *Este recorrido también existe en español: `recorrido.ipynb`.*

# %% [markdown] lang="es"
# # pneumoscope, la historia completa
#
# El recorrido que haría primero quien aprende con el proyecto: los datos, por qué se dividen por niño,
# una primera red pequeña entrenada aquí en más o menos un minuto, el modelo que el proyecto distribuye,
# el atajo que ofrece este conjunto de datos y cómo lo evita el modelo distribuido, predicciones con sus
# explicaciones, el umbral de decisión, la página web, y aquello para lo que el modelo nunca debe usarse.
#
# **Solo para investigación y docencia. No es un producto sanitario.**
#
# Cada número y cada figura de abajo se calcula al ejecutar el cuaderno, con la API pública del propio
# proyecto (`import pneumoscope`); nada se lee de `docs/`. Se ejecuta de principio a fin en unos pocos
# minutos con dos núcleos de CPU. Necesita los datos junto al repositorio (`../shared/data`, o la
# variable `PNEUMOSCOPE_DATA`); `make notebook` lo abre en JupyterLab. El código y las figuras están
# en inglés, como el proyecto; el texto, en español.
#
# *This walkthrough is also in English: `walkthrough.ipynb`.*

# %% tags=["stable"]
import logging
import os
import shutil
import socket
import tempfile
import time
import warnings
from collections import Counter
from dataclasses import replace
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from IPython.display import IFrame, Markdown, display
from sklearn.metrics import classification_report, roc_curve
from sklearn.neighbors import KNeighborsClassifier

import pneumoscope
from pneumoscope import Predictor

STARTED = time.perf_counter()
plt.rcParams.update({"figure.dpi": 80, "figure.figsize": (9, 3.2), "axes.grid": True, "grid.alpha": 0.3})
pd.set_option("display.precision", 3)
pd.set_option("display.max_colwidth", 90)
logging.getLogger("lightning.pytorch.utilities.rank_zero").setLevel(logging.WARNING)  # Lightning's start-up chatter
warnings.filterwarnings("ignore", message=".*LeafSpec.*")  # Lightning's use of a torch API torch deprecates


def find_data() -> Path:
    """The shared data: $PNEUMOSCOPE_DATA, else `shared/data` in this folder or the nearest one above."""
    if os.environ.get("PNEUMOSCOPE_DATA"):
        return Path(os.environ["PNEUMOSCOPE_DATA"]).resolve()
    for folder in (Path.cwd(), *Path.cwd().parents):
        if (folder / "shared" / "data" / "chest_xray").is_dir():
            return folder / "shared" / "data"
    raise FileNotFoundError("no shared/data/chest_xray beside this repository: set PNEUMOSCOPE_DATA")


DATA = find_data()
CHEST_XRAY = DATA / "chest_xray"
WORK = Path(tempfile.mkdtemp(prefix="pneumoscope-walkthrough-"))  # this session's run folders
print(f"pneumoscope {pneumoscope.__version__}; training folder found: {(CHEST_XRAY / 'train').is_dir()}")

# %% [markdown] lang="en"
# ## 1. The data
#
# Paediatric chest radiographs from one hospital in Guangzhou (Kermany et al. 2018, CC BY 4.0), in the
# Kaggle layout: `train/` and `val/`, each with `NORMAL/` and `PNEUMONIA/`. The official test split is
# deliberately not here: it is a sealed benchmark. Each file name carries the child it belongs to
# (`person1071_virus_1774.jpeg` is child 1071; `IM-0283-0001.jpeg` is child 0283).

# %% [markdown] lang="es"
# ## 1. Los datos
#
# Radiografías de tórax pediátricas de un hospital de Cantón (Kermany et al. 2018, CC BY 4.0), con la
# estructura de Kaggle: `train/` y `val/`, cada una con `NORMAL/` y `PNEUMONIA/`. La partición oficial de
# prueba no está aquí a propósito: es una referencia sellada. Cada nombre de archivo indica a qué niño
# pertenece (`person1071_virus_1774.jpeg` es el niño 1071; `IM-0283-0001.jpeg`, el niño 0283).

# %% tags=["stable"]
splits = {split: pneumoscope.records_for(CHEST_XRAY, split) for split in ("train", "val")}
films = pd.DataFrame([{"split": r.split, "class": r.class_name, "child": r.patient}
                      for records in splits.values() for r in records])
counts = pd.crosstab(films["split"], films["class"], margins=True, margins_name="total")
counts["NORMAL share"] = (counts["NORMAL"] / counts["total"]).round(3)
counts

# %% [markdown] lang="en"
# NORMAL is the minority: about one film in four. A network trained on these films as they are sees
# three pneumonia films for every normal one, and the easiest way to be right most of the time is to say
# "pneumonia". The official `val/` folder holds 16 films: far too few to judge a model by.
#
# Many children have several films:

# %% [markdown] lang="es"
# NORMAL es la clase minoritaria: más o menos una placa de cada cuatro. Una red entrenada con estas
# placas tal como están ve tres placas de neumonía por cada placa normal, y la manera más fácil de acertar casi
# siempre es decir «neumonía». La carpeta oficial `val/` tiene 16 placas: demasiado pocas para juzgar un
# modelo.
#
# Muchos niños tienen varias placas:

# %% tags=["stable"]
per_child = films[films["split"] == "train"].groupby(["class", "child"]).size()
fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.2))
counts.drop(index="total")[["NORMAL", "PNEUMONIA"]].plot.bar(ax=left, rot=0, color=["tab:blue", "tab:red"])
left.set(title="Films per class and split", xlabel="", ylabel="films")
for bars in left.containers:
    left.bar_label(bars, fontsize=9)
bins = np.arange(1, per_child.max() + 2) - 0.5
for name, colour in (("NORMAL", "tab:blue"), ("PNEUMONIA", "tab:red")):
    right.hist(per_child[name], bins=bins, alpha=0.6, label=name, color=colour)
right.set(title="Films per child (training folder)", xlabel="films of the same child", ylabel="children",
          yscale="log")
right.legend()
fig.tight_layout()
plt.show()
several = per_child[per_child > 1]
print(f"{len(per_child)} children in the training folder; {len(several)} of them have several films, "
      f"{several.sum()} films in all ({several.sum() / per_child.sum():.0%} of the folder); "
      f"the most films of one child: {per_child.max()}")

# %% [markdown] lang="en"
# Some files are byte-for-byte copies of each other. A copy on both sides of a split is a leak; a copy
# under both labels would be an error in the data.

# %% [markdown] lang="es"
# Algunos archivos son copias idénticas, byte a byte. Una copia a ambos lados de una partición es una
# fuga; una copia con las dos etiquetas sería un error en los datos.

# %% tags=["stable"]
copies = pneumoscope.find_duplicates([r for records in splits.values() for r in records])
print(f"{len(copies)} groups of identical files, {sum(len(group) - 1 for group in copies)} redundant copies")
pd.DataFrame([{"files": ", ".join(Path(r.path).name for r in group),
               "classes": " / ".join(sorted({r.class_name for r in group})),
               "splits": " / ".join(sorted({r.split for r in group})),
               "children": len({r.patient for r in group})} for group in copies]).head(6)

# %% [markdown] lang="en"
# ## 2. Why every split goes by child
#
# If one child's films land on both sides of a train/validation split, the model is partly graded on
# lungs it has already seen, and validation flatters it. The project measures this with
# `pneumoscope leakage`, which trains the CNN twice (a few minutes). Here the same experiment runs in
# seconds with a model that memorises by construction, a 5-nearest-neighbour classifier on 32 × 32
# thumbnails:
#
# 1. 15 % of the children are put aside first: they stand in for the new patients a model meets later;
# 2. the rest is split into train and validation twice, with the same share of films: once **by
#    image** (a child's films can fall on both sides) and once **by child**;
# 3. each classifier is graded on its own validation films and on the children put aside.

# %% [markdown] lang="es"
# ## 2. Por qué toda partición se hace por niño
#
# Si las placas de un mismo niño caen a ambos lados de una partición entrenamiento/validación, el modelo
# se evalúa en parte con pulmones que ya ha visto, y la validación lo halaga. El proyecto lo mide con
# `pneumoscope leakage`, que entrena la CNN dos veces (unos minutos). Aquí el mismo experimento se hace en
# segundos con un modelo que memoriza por construcción, un clasificador de 5 vecinos más cercanos sobre
# miniaturas de 32 × 32:
#
# 1. primero se aparta el 15 % de los niños: hacen el papel de los pacientes nuevos que un modelo
#    encuentra después;
# 2. el resto se divide dos veces en entrenamiento y validación, con la misma proporción de placas: una
#    vez **por imagen** (las placas de un niño pueden caer a ambos lados) y otra **por niño**;
# 3. cada clasificador se evalúa con sus propias placas de validación y con los niños apartados.

# %% tags=["stable"]
train_folder = splits["train"]
thumbnails = pneumoscope.load_images([r.path for r in train_folder], 32, progress=False)
thumbnails = thumbnails.reshape(len(train_folder), -1).astype(np.float32)
thumbnails = (thumbnails - thumbnails.mean(1, keepdims=True)) / (thumbnails.std(1, keepdims=True) + 1e-6)
row_of = {r.path: index for index, r in enumerate(train_folder)}
labels_all = np.array([r.label for r in train_folder])

aside = pneumoscope.patient_split(train_folder, 0.15, seed=2018)  # "val" here means: put aside
pool = [r for r in aside if r.split == "train"]
new_children = [row_of[r.path] for r in aside if r.split == "val"]
leakage = []
for level, split in (("by image", pneumoscope.image_split), ("by child", pneumoscope.patient_split)):
    records = split(pool, 0.15, 42)
    fit = [row_of[r.path] for r in records if r.split == "train"]
    graded = [row_of[r.path] for r in records if r.split == "val"]
    seen = {r.patient for r in records if r.split == "train"}
    knn = KNeighborsClassifier(5).fit(thumbnails[fit], labels_all[fit])
    own = (knn.predict(thumbnails[graded]) == labels_all[graded]).mean()
    new = (knn.predict(thumbnails[new_children]) == labels_all[new_children]).mean()
    leakage.append({"split": level,
                    "validation films of children seen in training (%)": 100 * np.mean(
                        [r.patient in seen for r in records if r.split == "val"]),
                    "validation accuracy (%)": 100 * own, "accuracy on new children (%)": 100 * new,
                    "overstated by (points)": 100 * (own - new)})
leakage = pd.DataFrame(leakage).set_index("split").round(1) + 0.0  # + 0.0: no "-0.0"
leakage

# %% tags=["stable"]
ax = leakage[["validation accuracy (%)", "accuracy on new children (%)"]].plot.bar(
    rot=0, figsize=(6, 3.2), color=["tab:orange", "tab:green"])
ax.set(ylim=(90, 100), ylabel="accuracy (%)", xlabel="", title="What validation promised, what new children got")
ax.legend(loc="lower right")
plt.show()

# %% [markdown] lang="en"
# Split by image, most validation films belong to a child the classifier has already seen, and it
# promises more than it delivers on new children. Split by child, what validation says is what new
# children get. Every split in pneumoscope is therefore made by child (`patient_split`); the image-level
# split exists only to measure this.

# %% [markdown] lang="es"
# Con la partición por imagen, la mayoría de las placas de validación son de un niño que el clasificador
# ya ha visto, y promete más de lo que consigue con niños nuevos. Con la partición por niño, lo que dice
# la validación es lo que obtienen los niños nuevos. Por eso en pneumoscope toda partición se hace por
# niño (`patient_split`); la partición por imagen existe solo para medir esto.

# %% [markdown] lang="en"
# ## 3. A first CNN, trained here
#
# The project's first model (`configs/baseline.yaml`) is a plain 4-block CNN at 128 px trained on the
# imbalanced films as they are, with the textbook threshold of 0.5. We train it here with the project's
# own training entry point (`pneumoscope.train`, what `pneumoscope train` runs) on a quarter of the
# children of the shipped model's training part, for 3 epochs: about half a minute on two idle cores,
# a minute or more on busy ones. The shipped model's validation children are never used for training,
# so both models can be graded on them below. (`32-true`: fp32 rather than the bf16 some CPUs would
# pick, so that runs on different CPUs agree closely.)

# %% [markdown] lang="es"
# ## 3. Una primera CNN, entrenada aquí
#
# El primer modelo del proyecto (`configs/baseline.yaml`) es una CNN simple de 4 bloques a 128 px
# entrenada con las placas desequilibradas tal como están, con el umbral de manual de 0,5. La entrenamos
# aquí con el propio punto de entrada de entrenamiento del proyecto (`pneumoscope.train`, lo que ejecuta
# `pneumoscope train`) sobre una cuarta parte de los niños de la parte de entrenamiento del modelo
# distribuido, durante 3 épocas: más o menos medio minuto con dos núcleos libres, un minuto o más si
# están ocupados. Los niños de validación del modelo distribuido nunca se usan para entrenar, así que
# más abajo ambos modelos pueden evaluarse con ellos. (`32-true`: fp32 en lugar del bf16 que elegirían
# algunas CPU, para que las ejecuciones en CPU distintas coincidan de cerca.)

# %% tags=["stable"]
bundled = Predictor.load()  # the shipped model: src/pneumoscope/weights/default


def on_disk(path: str) -> str:
    """A manifest's path read under DATA: manifests are written relative to the repository root."""
    parts = Path(path).parts
    return str(DATA.joinpath(*parts[parts.index("chest_xray"):]))


manifest = [replace(r, path=on_disk(r.path))
            for r in pneumoscope.read_manifest(bundled.model_path / "split_manifest.csv")]
validation = [r for r in manifest if r.split == "val"]
subset = [r for r in pneumoscope.patient_split([r for r in manifest if r.split == "train"], 0.25, seed=0)
          if r.split == "val"]  # a quarter of the training children, both classes alike
pneumoscope.link_collection(subset, WORK / "subset" / "train")  # a training folder of links, nothing copied
print(f"training subset: {len(subset)} films of {len({r.patient for r in subset})} children, "
      f"{dict(Counter(r.class_name for r in subset))}")
print(f"validation (the shipped model's): {len(validation)} films of {len({r.patient for r in validation})} "
      f"children, {dict(Counter(r.class_name for r in validation))}")

# %%
config = pneumoscope.load_config(pneumoscope.CONFIGS_DIR / "baseline.yaml", **{
    "name": "first-cnn", "train.epochs": 3, "train.precision": "32-true"})
started = time.perf_counter()
first_run = pneumoscope.train(config, WORK / "first-cnn", root=WORK / "subset")
print(f"trained, calibrated and saved in {time.perf_counter() - started:.0f} s")

# %% [markdown] lang="en"
# The run folder is a complete model (weights, threshold, model card), so the same `Predictor` that
# serves the shipped model loads it. Graded on the shipped model's 785 validation films:

# %% [markdown] lang="es"
# La carpeta del entrenamiento es un modelo completo (pesos, umbral, ficha del modelo), así que el mismo
# `Predictor` que sirve el modelo distribuido la carga. Evaluada con las 785 placas de validación del
# modelo distribuido:

# %%
first_cnn = Predictor.load(first_run, backend="torch")
paths = [r.path for r in validation]
truth = np.array([r.label for r in validation])
p_first = np.array([result.probability for result in first_cnn.predict_many(paths)])
print(classification_report(truth, p_first >= first_cnn.threshold, target_names=["NORMAL", "PNEUMONIA"],
                            digits=3))

# %% [markdown] lang="en"
# Look at the recall column. Pneumonias are found (high PNEUMONIA recall), but a good share of healthy
# children are called ill: NORMAL recall, the specificity, is low. That is the imbalance problem the
# course project met: with three pneumonias for each normal film and a threshold of 0.5, the network
# leans towards "pneumonia". The project's answers: class-balanced sampling, a pretrained network, and a
# threshold chosen on validation for a stated sensitivity instead of 0.5.

# %% [markdown] lang="es"
# Mire la columna *recall* (sensibilidad por clase). Las neumonías se encuentran (recall de PNEUMONIA
# alto), pero una buena parte de los niños sanos se declaran enfermos: el recall de NORMAL, la
# especificidad, es bajo. Es el problema del desequilibrio con el que se encontró el proyecto del curso:
# con tres neumonías por cada placa normal y un umbral de 0,5, la red se inclina hacia «neumonía». Las
# respuestas del proyecto: muestreo equilibrado por clase, una red preentrenada y un umbral elegido en
# validación para una sensibilidad fijada de antemano, en lugar de 0,5.

# %% [markdown] lang="en"
# ## 4. The first CNN against the shipped model
#
# The shipped model is an ensemble of three EfficientNet-Lite0 networks (ImageNet-pretrained, balanced
# sampling, augmentation that takes framing away, threshold chosen on stressed validation). Both models
# score the same 785 validation films, each at its own threshold:

# %% [markdown] lang="es"
# ## 4. La primera CNN frente al modelo distribuido
#
# El modelo distribuido es un conjunto de tres redes EfficientNet-Lite0 (preentrenadas en ImageNet, con
# muestreo equilibrado, un aumento de datos que le quita valor al encuadre y un umbral elegido en la
# validación perturbada). Ambos modelos puntúan las mismas 785 placas de validación, cada uno con su
# propio umbral:

# %% tags=["stable"]
p_bundled = np.array([result.probability for result in bundled.predict_many(paths)])
print(f"shipped model, threshold {bundled.threshold:.3f}")
print(classification_report(truth, p_bundled >= bundled.threshold, target_names=["NORMAL", "PNEUMONIA"],
                            digits=3))

# %%
children = [r.patient for r in validation]
scored = {"first CNN": (p_first, first_cnn.threshold), "shipped model": (p_bundled, bundled.threshold)}
metrics = {name: pneumoscope.compute_metrics(truth, p, threshold, children, n_boot=200)
           for name, (p, threshold) in scored.items()}
display(pd.DataFrame({name: {"threshold": m["threshold"], "AUC": m["auc"],
                             "AUC 95 % CI": f"{m['auc_ci95'][0]:.3f}-{m['auc_ci95'][1]:.3f}",
                             "sensitivity": m["sensitivity"], "specificity (NORMAL recall)": m["specificity"],
                             "NORMAL films called PNEUMONIA": m["confusion_matrix"][0][1]}
                      for name, m in metrics.items()}))

fig, axes = plt.subplots(1, 3, figsize=(12, 3.6))
for ax, (name, m) in zip(axes, metrics.items()):
    matrix = np.array(m["confusion_matrix"])
    ax.imshow(matrix, cmap="Blues")
    ax.grid(False)
    for (row, column), value in np.ndenumerate(matrix):
        ax.text(column, row, value, ha="center", va="center", fontsize=13,
                color="white" if value > matrix.max() / 2 else "black")
    ax.set(title=f"{name} (threshold {m['threshold']:.3f})", xticks=[0, 1], yticks=[0, 1],
           xticklabels=["NORMAL", "PNEUMONIA"], yticklabels=["NORMAL", "PNEUMONIA"],
           xlabel="answered", ylabel="true")
for name, (p, threshold) in scored.items():
    fpr, tpr, _ = roc_curve(truth, p)
    axes[2].plot(fpr, tpr, label=f"{name}, AUC {metrics[name]['auc']:.3f}")
    axes[2].plot(1 - metrics[name]["specificity"], metrics[name]["sensitivity"], "o", color="black")
axes[2].set(title="ROC (dot: each model's threshold)", xlabel="1 - specificity", ylabel="sensitivity")
axes[2].legend(loc="lower right")
fig.tight_layout()
plt.show()

# %% [markdown] lang="en"
# On films like its training films the shipped model ranks films better (a higher ROC curve) and clears
# far more healthy children; the first CNN misses fewer pneumonias only because it calls so many films
# pneumonia. But validation drawn from the training folder cannot see one problem, because the problem
# is in its films too.

# %% [markdown] lang="es"
# Con placas como las de su entrenamiento, el modelo distribuido ordena mejor las placas (una curva ROC
# más alta) y descarta a muchos más niños sanos; la primera CNN deja escapar menos neumonías solo porque
# llama neumonía a muchísimas placas. Pero una validación sacada de la carpeta de entrenamiento no puede ver un problema, porque
# el problema también está en sus placas.

# %% [markdown] lang="en"
# ## 5. The shortcut, shown on one film
#
# In this data set *how a film was taken* predicts its label: NORMAL films are mostly wide-field (neck,
# arms, abdomen in view), PNEUMONIA films tightly framed. A network can learn the framing instead of the
# lungs. A radiologist's answer does not change when the same film is collimated tighter; a shortcut
# model's does. Take the first NORMAL validation film (in file order) that both models call NORMAL,
# keep the central 90 %, 80 % and 70 % of each side (`perturb_images`, the stress report's own
# perturbation) and ask both models again. (The project's second model, `improved` in the README, was
# just as sure of itself on clean validation and flipped the same way; it is no longer shipped.)

# %% [markdown] lang="es"
# ## 5. El atajo, visto en una placa
#
# En este conjunto de datos, *cómo se tomó una placa* predice su etiqueta: las placas NORMAL son sobre todo
# de campo amplio (se ven el cuello, los brazos, el abdomen) y las de PNEUMONIA, de encuadre ajustado. Una
# red puede aprender el encuadre en lugar de los pulmones. La respuesta de un radiólogo no cambia cuando
# la misma placa se colima más ajustada; la de un modelo con atajo, sí. Tomemos la primera placa NORMAL de
# validación (por orden de archivo) que ambos modelos declaran NORMAL, conservemos el 90 %, el 80 % y el
# 70 % central de cada lado (`perturb_images`, la misma perturbación del informe de estrés) y volvamos a
# preguntar a ambos modelos. (El segundo modelo del proyecto, `improved` en el README, estaba igual de
# seguro de sí mismo en la validación sin perturbar y cambiaba de respuesta del mismo modo; ya no se
# distribuye.)

# %%
film_index = next(i for i, r in enumerate(validation)
                  if r.label == 0 and p_first[i] < first_cnn.threshold and p_bundled[i] < bundled.threshold)
film = bundled.prepare(validation[film_index].path).pixels  # the film as the network sees it, 224 px
fractions = (1.0, 0.9, 0.8, 0.7)
views = [film if f == 1.0 else pneumoscope.perturb_images(film[None], "crop_center", f)[0] for f in fractions]
fig, axes = plt.subplots(1, len(views), figsize=(12, 3.6))
rows = []
for ax, fraction, view in zip(axes, fractions, views):
    first, shipped = first_cnn.predict(view), bundled.predict(view)
    rows.append({"central part kept": fraction, "first CNN p": first.probability, "first CNN says": first.label,
                 "shipped p": shipped.probability, "shipped says": shipped.label})
    ax.imshow(view, cmap="gray")
    ax.axis("off")
    ax.set_title(f"kept {fraction:.0%}\nfirst CNN: {first.label}\nshipped: {shipped.label}", fontsize=10)
fig.tight_layout()
plt.show()
print(f"{Path(validation[film_index].path).name}, a NORMAL validation film")
pd.DataFrame(rows).set_index("central part kept")

# %% [markdown] lang="en"
# The anatomy did not change, only the framing. As the frame tightens the first CNN's probability of
# pneumonia climbs and its answer flips to PNEUMONIA; the shipped model, trained so that framing and
# squeeze carry no label information, keeps its answer. One film is an anecdote; the stress table counts
# it over all 202 NORMAL validation films, under the acquisition changes that move answers most
# (each film's perturbation is seeded: the same table every run):

# %% [markdown] lang="es"
# La anatomía no ha cambiado, solo el encuadre. Al ajustarse el encuadre, la probabilidad de neumonía de
# la primera CNN sube y su respuesta pasa a PNEUMONIA; el modelo distribuido, entrenado para que el
# encuadre y la deformación no digan nada de la etiqueta, mantiene su respuesta. Una placa es una
# anécdota; la tabla de estrés lo cuenta sobre las 202 placas NORMAL de validación, bajo los cambios de
# adquisición que más mueven las respuestas (la perturbación de cada placa tiene semilla fija: la misma
# tabla en cada ejecución):

# %%
conditions = (("clean", None), ("crop_center", 0.8), ("crop_center", 0.7), ("crop_offcentre", 0.7),
              ("zoom_out", 0.7), ("aspect", 1.5), ("noise", 0.08))
normal_paths = [r.path for r in validation if r.label == 0]
stress = {}
for name, model in (("first CNN", first_cnn), ("shipped model", bundled)):
    pixels = pneumoscope.load_images(normal_paths, model.image_size, progress=False)  # each at its own size
    called_ill = {}
    for family, strength in conditions:
        view = pixels if strength is None else pneumoscope.perturb_images(pixels, family, strength, seed=0)
        called_ill[family if strength is None else f"{family} {strength:g}"] = int(
            (model.score_pixels(view).probs >= model.threshold).sum())
    stress[name] = called_ill
stress = pd.DataFrame(stress).rename_axis(f"NORMAL validation films called PNEUMONIA (of {len(normal_paths)})")
stress

# %%
ax = stress.plot.barh(figsize=(8, 3.6), color=["tab:orange", "tab:blue"])
ax.invert_yaxis()
ax.set(xlabel=f"healthy children called ill (of {len(normal_paths)} NORMAL validation films)", ylabel="",
       title="Same films, acquired differently")
ax.legend(loc="lower right")
plt.show()

# %% [markdown] lang="en"
# The first CNN reads framing: tighter, off-centre or squeezed films turn healthy children into
# pneumonias. (Strong noise pushes it the other way, towards NORMAL: another cue that has nothing to do
# with the lungs.) The shipped model moves far less. It is not immune (zoom-out onto a black border and
# strong noise still move it most), and the full report, `pneumoscope stress`, scores every validation
# film under 33 conditions; the model card quotes it.

# %% [markdown] lang="es"
# La primera CNN lee el encuadre: las placas más ajustadas, descentradas o deformadas convierten a niños
# sanos en neumonías. (El ruido fuerte la empuja en sentido contrario, hacia NORMAL: otra pista que nada
# tiene que ver con los pulmones.) El modelo distribuido se mueve mucho menos. No es inmune (reducir la placa sobre un
# borde negro y el ruido fuerte siguen siendo lo que más lo mueve), y el informe completo,
# `pneumoscope stress`, puntúa todas las placas de validación bajo 33 condiciones; la ficha del modelo lo
# cita.

# %% [markdown] lang="en"
# ## 6. Predicting, explained
#
# The shipped examples (`pneumoscope/examples/`, full-resolution films as a user would upload them):
# the calibrated probability of pneumonia, the label at the model's threshold, a Grad-CAM heatmap of
# what drove the answer, and for a pneumonia the pattern it resembles more, bacterial or viral (a
# pattern, never a diagnosis of the cause).

# %% [markdown] lang="es"
# ## 6. Predecir, y explicar
#
# Los ejemplos distribuidos (`pneumoscope/examples/`, placas a resolución completa tal como las subiría
# un usuario): la probabilidad calibrada de neumonía, la etiqueta según el umbral del modelo, un mapa de
# calor Grad-CAM de lo que motivó la respuesta y, para una neumonía, el patrón al que más se parece,
# bacteriano o vírico (un patrón, nunca un diagnóstico de la causa).

# %% tags=["stable"]
examples = sorted((Path(pneumoscope.__file__).parent / "examples").glob("*.jpeg"))
results = bundled.predict_many(examples, heatmap=True)
fig, axes = plt.subplots(1, len(examples), figsize=(12, 3.6))
for ax, path, result in zip(axes, examples, results):
    ax.imshow(result.overlay)
    ax.axis("off")
    ax.set_title(f"{path.stem.split('_', 1)[1]}\n{result.label}, p = {result.probability:.2f}", fontsize=9)
fig.tight_layout()
plt.show()
pd.DataFrame([{"file": path.name, "label": r.label, "probability": r.probability, "X-ray check": r.xray_check,
               "pattern": r.subtype_pattern or ""} for path, r in zip(examples, results)])

# %% [markdown] lang="en"
# A model should also know what it was not made for. An image that is not a chest X-ray still gets the
# network's raw output, but it is refused: `is_chest_xray` is false, and the warnings say why. Here a
# grey photograph and a colour one (scikit-image's sample images):

# %% [markdown] lang="es"
# Un modelo también debe saber para qué no está hecho. Una imagen que no es una radiografía de tórax
# sigue recibiendo la salida bruta de la red, pero se rechaza: `is_chest_xray` es falso y los avisos
# dicen por qué. Aquí, una fotografía en gris y otra en color (imágenes de muestra de scikit-image):

# %% tags=["stable"]
from skimage import data as samples

fig, axes = plt.subplots(1, 2, figsize=(6, 3.2))
for ax, (name, image) in zip(axes, (("camera", samples.camera()), ("astronaut", samples.astronaut()))):
    result = bundled.predict(image)
    ax.imshow(image, cmap="gray")
    ax.axis("off")
    ax.set_title(f"{name}: X-ray check '{result.xray_check}'", fontsize=10)
    print(f"{name}: is_chest_xray={result.is_chest_xray}, check={result.xray_check}, "
          f"feature distance {result.ood_distance:.0f} (refused beyond {bundled.ood_threshold:.0f})")
    for warning in result.warnings:
        print("   -", warning)
fig.tight_layout()
plt.show()

# %% [markdown] lang="en"
# ## 7. The threshold
#
# The network gives a probability; the label needs a threshold. Lower it and fewer pneumonias are
# missed, but more healthy children are called ill. The shipped model's threshold was chosen for at
# least 97 % sensitivity on stressed validation, because a missed pneumonia costs more than a second
# look at a healthy film. On the clean validation films:

# %% [markdown] lang="es"
# ## 7. El umbral
#
# La red da una probabilidad; la etiqueta necesita un umbral. Si se baja, se escapan menos neumonías,
# pero más niños sanos se declaran enfermos. El umbral del modelo distribuido se eligió para tener al
# menos un 97 % de sensibilidad en la validación perturbada, porque una neumonía que se escapa cuesta más
# que volver a mirar una placa sana. Con las placas de validación sin perturbar:

# %% tags=["stable"]
thresholds = np.linspace(0, 1, 201)
sensitivity = [(p_bundled[truth == 1] >= t).mean() for t in thresholds]
specificity = [(p_bundled[truth == 0] < t).mean() for t in thresholds]
fig, ax = plt.subplots(figsize=(8, 3.4))
ax.plot(thresholds, sensitivity, label="sensitivity (pneumonias found)", color="tab:red")
ax.plot(thresholds, specificity, label="specificity (healthy children cleared)", color="tab:blue")
ax.axvline(bundled.threshold, color="black", linestyle="--", label=f"model's threshold {bundled.threshold:.3f}")
ax.axvline(0.5, color="grey", linestyle=":", label="0.5")
ax.set(xlabel="threshold on the probability of pneumonia", ylabel="share", ylim=(0.5, 1.01),
       title="Shipped model, validation: moving the threshold")
ax.legend(loc="lower center", fontsize=9)
plt.show()
pd.DataFrame([{"threshold": t, "sensitivity": (p_bundled[truth == 1] >= t).mean(),
               "specificity": (p_bundled[truth == 0] < t).mean(),
               "pneumonias missed": int((p_bundled[truth == 1] < t).sum()),
               "healthy called ill": int((p_bundled[truth == 0] >= t).sum())}
              for t in (0.05, bundled.threshold, 0.3, 0.5, 0.8)]).set_index("threshold")

# %% [markdown] lang="en"
# ## 8. The web page
#
# The same predictor behind a page anyone can use, offline (`pneumoscope serve`, or `make app`). Run in
# Jupyter, the next cell starts it here and shows it below; on a remote Jupyter, open the printed link
# through your own port forwarding. When the notebook runs headless (CI, or `PNEUMOSCOPE_HEADLESS=1`) the
# page is not started.

# %% [markdown] lang="es"
# ## 8. La página web
#
# El mismo predictor detrás de una página que cualquiera puede usar, sin conexión (`pneumoscope serve`, o
# `make app`). Ejecutada en Jupyter, la celda siguiente la arranca aquí y la muestra debajo; con un
# Jupyter remoto, abra el enlace impreso a través de su propia redirección de puertos. Cuando el cuaderno
# se ejecuta sin pantalla (CI, o `PNEUMOSCOPE_HEADLESS=1`) la página no se arranca. La página habla
# español si el navegador lo pide.

# %% tags=["stable"]
HEADLESS = bool(os.environ.get("CI") or os.environ.get("PNEUMOSCOPE_HEADLESS"))
served = None
if HEADLESS:
    print("headless run: the web page is not started (run this cell in Jupyter to open it here)")
else:
    with socket.socket() as probe:  # a free port, so a page already running elsewhere is left alone
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    served = pneumoscope.serve(port=port, block=False, warm_up=False)
    display(Markdown(f"The page is running at <{served.url}>; `served.close()` stops it."))
    display(IFrame(served.url, width="100%", height=720))

# %% [markdown] lang="en"
# ## 9. What the model must not be used for
#
# From the shipped model's card (`MODEL_CARD.md`, beside its weights):

# %% [markdown] lang="es"
# ## 9. Para qué no debe usarse el modelo
#
# De la ficha del modelo distribuido (`MODEL_CARD.md`, junto a sus pesos; en inglés):

# %% tags=["stable"]
card = (bundled.model_path / "MODEL_CARD.md").read_text(encoding="utf-8")
intended = next(line for line in card.splitlines() if line.startswith("**Intended use"))
limits = card.split("## Known limits", 1)[1].split("\n## ", 1)[0]
display(Markdown(intended + "\n\n**Known limits**\n" + limits))

# %% [markdown] lang="en"
# In plain words: **never use it to diagnose, treat or triage a child**, and never as a reason to give or
# withhold antibiotics. It has seen films of children aged one to five from one hospital; adults, other
# hospitals' machines, lateral views and other diseases are outside what it knows. Its validation was
# drawn from the same source as its training, so even its stressed figures are optimistic for a new
# hospital. Use it to learn how such a model is built, measured and fooled.

# %% [markdown] lang="es"
# En pocas palabras: **nunca lo use para diagnosticar, tratar o priorizar a un niño**, ni como motivo
# para dar o retirar antibióticos. Solo ha visto placas de niños de uno a cinco años de un único
# hospital; los adultos, los equipos de otros hospitales, las proyecciones laterales y otras enfermedades
# quedan fuera de lo que conoce. Su validación procede de la misma fuente que su entrenamiento, así que
# incluso sus cifras bajo estrés son optimistas para un hospital nuevo. Úselo para aprender cómo se
# construye, se mide y se engaña un modelo así.

# %%
if served is not None:
    served.close()  # stop the page started above
shutil.rmtree(WORK, ignore_errors=True)  # this session's run folders (the first CNN included)
print(f"the whole notebook ran in {time.perf_counter() - STARTED:.0f} s")
