"""Stateless layers: immutable hyperparameter objects with ``init``/``apply``."""

from fgrad.nn.layers.attention import MultiHeadAttention
from fgrad.nn.layers.base import Layer
from fgrad.nn.layers.conv import Conv1D, Conv2D, ConvTranspose2D
from fgrad.nn.layers.dropout import Dropout
from fgrad.nn.layers.linear import Dense, Embedding, Flatten
from fgrad.nn.layers.normalization import BatchNorm, LayerNorm
from fgrad.nn.layers.pooling import AvgPool2D, MaxPool2D
from fgrad.nn.layers.recurrent import GRU, LSTM, SimpleRNN
from fgrad.nn.layers.sequential import Sequential

__all__ = [
    "GRU",
    "LSTM",
    "AvgPool2D",
    "BatchNorm",
    "Conv1D",
    "Conv2D",
    "ConvTranspose2D",
    "Dense",
    "Dropout",
    "Embedding",
    "Flatten",
    "Layer",
    "LayerNorm",
    "MaxPool2D",
    "MultiHeadAttention",
    "Sequential",
    "SimpleRNN",
]
