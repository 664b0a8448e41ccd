"""Thin blueprints: parse → call one service → render or redirect."""
