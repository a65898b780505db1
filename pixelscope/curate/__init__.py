"""Curate and package a training set: a recipe over the manifest and the issues table
(exclusions, SQL filters, label fixes, balance, stable group-aware splits) -> the ledger
(curation.parquet: every image, included or not and why) -> exports that trainers load
(imagefolder, torchvision, webdataset, parquet) and a dataset card. Raw data is never modified.
"""
