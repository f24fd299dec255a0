"""Packages of the distribution (the rest of the metadata is in pyproject.toml).

nnU-Net imports trainer modules by bare name from the folders listed in ``nnUNet_extTrainer``, so
the trainers live in a plain folder, ``trainers/`` at the top of the checkout. A wheel ships that
folder inside the package as ``spcl_nnunet/trainers/`` (``spcl_nnunet.data.environment.trainers_dir``
finds either), so that ``pip install .`` or ``pip install git+URL`` installs working trainers.
"""

from setuptools import find_packages, setup

setup(packages=[*find_packages(include=["spcl_nnunet", "spcl_nnunet.*"]), "spcl_nnunet.trainers"],
      package_dir={"spcl_nnunet.trainers": "trainers"},
      package_data={"spcl_nnunet.trainers": ["README.md"]})
