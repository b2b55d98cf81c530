// Ringback tones: what your callers hear while your phone rings. Browse the catalog (with
// previews), get tones into "your tones", upload your own, pick the default or shuffle, add
// rules (a contact, a group, days, a time window) and check what a given caller hears now.
// Shown only when the server has /v1/ringback (features.js).

import { h, replace, toast } from '../dom.js';
import { formatDateTime, formatDuration, language, t } from '../i18n.js';
import { icon } from '../icons.js';
import { apiErrorText, card, emptyState } from './widgets.js';

const UNKNOWN = '';

export class RingbackView {
  constructor({ api, contacts }) {
    this.api = api;
    this.contacts = contacts;
    this.root = null;
    this.setting = null;
    this.box = [];
    this.catalog = [];
    this.categories = [];
    this.query = '';
    this.category = '';
    this.previewCaller = UNKNOWN;
    this.player = new Audio();
    this.playing = null; // tone id
    this.urls = new Map(); // tone id -> object URL
    this.player.addEventListener('ended', () => this.setPlaying(null));
    this.searchTimer = null;
  }

  title() {
    return t('nav.ringback');
  }

  mount(root) {
    this.root = root;
    replace(root,
      h('div', { class: 'page-head' }, h('h1', { id: 'page-title' }, t('nav.ringback'))),
      h('p', { class: 'lead muted' }, t('rb.intro')),
      h('div', { class: 'columns' },
        h('div', { class: 'col-main stack-lg' },
          h('div', { id: 'rb-now' }), h('div', { id: 'rb-box' }), h('div', { id: 'rb-catalog' })),
        h('div', { class: 'col-side' },
          h('div', { id: 'rb-upload' }), h('div', { id: 'rb-rules' }))));
    this.drawUpload();
    this.load();
  }

  unmount() {
    this.player.pause();
    for (const url of this.urls.values()) URL.revokeObjectURL(url);
    this.urls.clear();
    this.root = null;
  }

  async load() {
    try {
      const [setting, box, catalog, categories] = await Promise.all([
        this.api.ringback(), this.api.toneBox(), this.api.tones(),
        this.api.toneCategories().catch(() => []),
      ]);
      Object.assign(this, { setting, box, catalog, categories });
      if (!this.contacts.loaded) await this.contacts.refresh().catch(() => {});
    } catch (err) {
      if (this.root) {
        replace(this.root.querySelector('#rb-box'), h('div', { class: 'empty', role: 'alert' },
          h('p', {}, apiErrorText(err)),
          h('button', { type: 'button', class: 'secondary', onclick: () => this.load() },
            t('action.retry'))));
      }
      return;
    }
    this.drawAll();
  }

  drawAll() {
    if (!this.root) return;
    this.drawBox();
    this.drawRules();
    this.drawCatalog();
    this.drawNow();
  }

  tone(toneId) {
    return this.box.find((i) => i.tone.tone_id === toneId)?.tone
      || this.catalog.find((c) => c.tone_id === toneId) || null;
  }

  toneTitle(toneId) {
    return this.tone(toneId)?.title || t('rb.unknownTone');
  }

  usable() {
    return this.box.filter((i) => i.usable);
  }

  // ------------------------------------------------------------------- what they hear now

  async drawNow() {
    const slot = this.root?.querySelector('#rb-now');
    if (!slot) return;
    const select = h('select', {
      id: 'rb-preview-caller',
      onchange: (ev) => { this.previewCaller = ev.target.value; this.drawNow(); },
    },
    h('option', { value: UNKNOWN }, t('rb.unknownCaller')),
    this.contacts.list.map((c) => h('option', { value: c.username },
      c.display_name ? `${c.display_name} (@${c.username})` : c.username)));
    select.value = this.previewCaller;
    const answer = h('p', { id: 'rb-preview', class: 'rb-answer', 'aria-live': 'polite' },
      t('loading'));
    replace(slot, card(t('rb.nowTitle'), h('div', { class: 'stack' },
      h('div', { class: 'field' }, h('label', { for: 'rb-preview-caller' }, t('rb.hearAs')), select),
      answer), { id: 'rb-now-card' }));
    try {
      const preview = await this.api.ringbackPreview(this.previewCaller || null);
      const who = this.previewCaller
        ? (this.contacts.name(this.previewCaller) || this.previewCaller) : t('rb.someone');
      const what = preview.tone_id ? `“${preview.title || this.toneTitle(preview.tone_id)}”`
        : t('rb.standardTone');
      replace(answer,
        h('span', {}, t('rb.hears', { who, what })), ' ',
        h('span', { class: 'muted' }, t(`rb.why.${preview.why}`)),
        preview.tone_id ? this.playButton(preview.tone_id, preview.title || '') : null);
      answer.dataset.toneId = preview.tone_id || '';
    } catch (err) {
      replace(answer, h('span', { class: 'form-error' }, apiErrorText(err)));
    }
  }

  // ------------------------------------------------------------------------ your tones

  drawBox() {
    const slot = this.root?.querySelector('#rb-box');
    if (!slot) return;
    const shuffle = this.setting.mode === 'shuffle';
    const mode = h('div', { class: 'segmented small', role: 'group', 'aria-label': t('rb.mode') },
      ['single', 'shuffle'].map((m) => h('button', {
        type: 'button', 'aria-pressed': String(this.setting.mode === m), dataset: { mode: m },
        onclick: () => this.save({ ...this.setting, mode: m }, t('rb.saved')),
      }, t(`rb.mode.${m}`))));
    const rows = this.box.length ? h('ul', { class: 'rows' }, this.box.map((item) => {
      const tone = item.tone;
      const isDefault = this.setting.default_tone_id === tone.tone_id;
      const status = !item.usable ? t('rb.expired')
        : item.expires_at ? t('rb.until', { date: formatDateTime(item.expires_at) }) : '';
      return h('li', { class: `row tone ${item.usable ? '' : 'unusable'}`, dataset: { toneId: tone.tone_id } },
        this.playButton(tone.tone_id, tone.title),
        h('div', { class: 'row-text' },
          h('span', { class: 'row-title' }, tone.title),
          h('span', { class: 'row-sub' }, [t(`rb.source.${item.source}`), status,
            formatDuration(tone.duration_s)].filter(Boolean).join(' · '))),
        h('div', { class: 'row-actions' },
          isDefault ? h('span', { class: 'chip' }, t('rb.isDefault')) : h('button', {
            type: 'button', class: 'secondary small', dataset: { action: 'make-default' },
            disabled: !item.usable,
            'aria-label': t('rb.makeDefaultName', { title: tone.title }),
            onclick: () => this.save({ ...this.setting, default_tone_id: tone.tone_id },
              t('rb.defaultSet', { title: tone.title })),
          }, t('rb.makeDefault')),
          h('button', {
            type: 'button', class: 'icon-button', dataset: { action: 'remove-tone' },
            'aria-label': t('rb.removeName', { title: tone.title }),
            title: t('rb.removeName', { title: tone.title }),
            onclick: () => this.removeTone(tone),
          }, icon('trash'))));
    })) : emptyState(t('rb.boxEmpty'), t('rb.boxEmptyHint'));
    replace(slot, card(t('rb.boxTitle'), h('div', { class: 'stack' },
      h('div', { class: 'row-between' },
        h('p', { class: 'muted' }, shuffle ? t('rb.shuffleHelp') : t('rb.singleHelp')), mode),
      this.setting.default_tone_id ? h('p', {}, t('rb.defaultIs', {
        title: this.toneTitle(this.setting.default_tone_id),
      }), ' ', h('button', {
        type: 'button', class: 'link', dataset: { action: 'clear-default' },
        onclick: () => this.save({ ...this.setting, default_tone_id: null }, t('rb.saved')),
      }, t('rb.useStandard'))) : h('p', {}, t('rb.defaultStandard')),
      rows), { id: 'rb-box-card' }));
  }

  async removeTone(tone) {
    const setting = {
      ...this.setting,
      default_tone_id: this.setting.default_tone_id === tone.tone_id
        ? null : this.setting.default_tone_id,
      rules: this.setting.rules.filter((r) => r.tone_id !== tone.tone_id),
    };
    try {
      if (JSON.stringify(setting) !== JSON.stringify(this.setting)) {
        this.setting = await this.api.putRingback(setting);
      }
      await this.api.removeFromBox(tone.tone_id);
      this.box = await this.api.toneBox();
      toast(t('rb.removed', { title: tone.title }));
      this.drawAll();
    } catch (err) {
      toast(apiErrorText(err), { kind: 'error' });
    }
  }

  // ---------------------------------------------------------------------------- rules

  drawRules() {
    const slot = this.root?.querySelector('#rb-rules');
    if (!slot) return;
    const rules = this.setting.rules;
    const list = rules.length ? h('ol', { class: 'rules' }, rules.map((rule, index) => h('li', {
      class: 'rule',
    }, h('div', { class: 'row-text' },
      h('span', { class: 'row-title' }, this.toneTitle(rule.tone_id)),
      h('span', { class: 'row-sub' }, this.describe(rule))),
    h('button', {
      type: 'button', class: 'icon-button', dataset: { action: 'remove-rule' },
      'aria-label': t('rb.removeRule', { n: index + 1 }),
      onclick: () => this.save({
        ...this.setting, rules: rules.filter((_, i) => i !== index),
      }, t('rb.ruleRemoved')),
    }, icon('trash'))))) : h('p', { class: 'muted' }, t('rb.noRules'));
    replace(slot, card(t('rb.rulesTitle'), h('div', { class: 'stack' },
      h('p', { class: 'muted' }, t('rb.rulesHelp', { tz: this.setting.timezone })),
      this.timezoneHint(), list, this.ruleForm()), { id: 'rb-rules-card' }));
  }

  timezoneHint() {
    const mine = Intl.DateTimeFormat().resolvedOptions().timeZone;
    if (!mine || mine === this.setting.timezone) return null;
    return h('p', {}, h('button', {
      type: 'button', class: 'link',
      onclick: () => this.save({ ...this.setting, timezone: mine }, t('rb.saved')),
    }, t('rb.useMyTimezone', { tz: mine })));
  }

  describe(rule) {
    const parts = [];
    const names = rule.callers.map((u) => this.contacts.name(u) || u);
    if (names.length) parts.push(t('rb.forCallers', { names: names.join(', ') }));
    if (rule.groups.length) parts.push(t('rb.forGroups', { groups: rule.groups.join(', ') }));
    if (!names.length && !rule.groups.length) parts.push(t('rb.forEveryone'));
    if (rule.days.length) parts.push(rule.days.map((d) => weekday(d)).join(', '));
    if (rule.start) parts.push(`${rule.start}–${rule.end}`);
    return parts.join(' · ');
  }

  ruleForm() {
    const usable = this.usable();
    if (!usable.length) return null;
    const error = h('p', { class: 'form-error', role: 'alert', id: 'rule-error' });
    const groups = this.contacts.groups();
    const form = h('form', { class: 'stack rule-form', novalidate: true },
      h('h3', { class: 'sub-title' }, t('rb.addRule')),
      h('div', { class: 'field' }, h('label', { for: 'rule-tone' }, t('rb.ruleTone')),
        h('select', { id: 'rule-tone', name: 'tone' },
          usable.map((i) => h('option', { value: i.tone.tone_id }, i.tone.title)))),
      h('div', { class: 'field' }, h('label', { for: 'rule-who' }, t('rb.ruleWho')),
        h('select', { id: 'rule-who', name: 'who' },
          h('option', { value: '' }, t('rb.forEveryone')),
          this.contacts.list.length ? h('optgroup', { label: t('nav.contacts') },
            this.contacts.list.map((c) => h('option', { value: `u:${c.username}` },
              c.display_name || c.username))) : null,
          groups.length ? h('optgroup', { label: t('rb.groups') },
            groups.map((g) => h('option', { value: `g:${g}` }, g))) : null)),
      h('fieldset', { class: 'days' }, h('legend', {}, t('rb.ruleDays')),
        [0, 1, 2, 3, 4, 5, 6].map((d) => h('label', { class: 'day' },
          h('input', { type: 'checkbox', name: 'day', value: String(d) }),
          h('span', {}, weekday(d))))),
      h('div', { class: 'inline-form' },
        h('div', { class: 'field' }, h('label', { for: 'rule-start' }, t('rb.ruleFrom')),
          h('input', { id: 'rule-start', name: 'start', type: 'time' })),
        h('div', { class: 'field' }, h('label', { for: 'rule-end' }, t('rb.ruleTo')),
          h('input', { id: 'rule-end', name: 'end', type: 'time' }))),
      error,
      h('button', { type: 'submit', class: 'primary' }, t('rb.addRuleButton')));
    form.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      const data = new FormData(form);
      const who = String(data.get('who') || '');
      const start = String(data.get('start') || '') || null;
      const end = String(data.get('end') || '') || null;
      if (!start !== !end) {
        error.textContent = t('rb.bothTimes');
        form.querySelector(start ? '#rule-end' : '#rule-start').focus();
        return;
      }
      const rule = {
        tone_id: String(data.get('tone')),
        callers: who.startsWith('u:') ? [who.slice(2)] : [],
        groups: who.startsWith('g:') ? [who.slice(2)] : [],
        days: data.getAll('day').map(Number),
        start,
        end,
      };
      error.textContent = '';
      const saved = await this.save({ ...this.setting, rules: [...this.setting.rules, rule] },
        t('rb.ruleAdded'), error);
      if (saved) this.root?.querySelector('#rule-tone')?.focus();
    });
    return form;
  }

  /** PUTs the whole setting; true when stored. Errors go to `errorEl` or a toast. */
  async save(setting, message, errorEl = null) {
    try {
      this.setting = await this.api.putRingback({
        default_tone_id: setting.default_tone_id || null,
        mode: setting.mode,
        timezone: setting.timezone,
        rules: setting.rules.map((r) => ({
          tone_id: r.tone_id, callers: r.callers, groups: r.groups, days: r.days,
          start: r.start || null, end: r.end || null,
        })),
      });
    } catch (err) {
      if (errorEl) errorEl.textContent = apiErrorText(err);
      else toast(apiErrorText(err), { kind: 'error' });
      return false;
    }
    toast(message);
    this.drawBox();
    this.drawRules();
    this.drawNow();
    return true;
  }

  // -------------------------------------------------------------------- catalog, upload

  drawCatalog({ focusSearch = false } = {}) {
    const slot = this.root?.querySelector('#rb-catalog');
    if (!slot) return;
    const owned = new Set(this.box.map((i) => i.tone.tone_id));
    const search = h('div', { class: 'inline-form' },
      h('div', { class: 'field grow' },
        h('label', { for: 'rb-search', class: 'visually-hidden' }, t('rb.search')),
        h('input', {
          id: 'rb-search', type: 'search', placeholder: t('rb.search'), value: this.query,
          oninput: (ev) => {
            this.query = ev.target.value;
            clearTimeout(this.searchTimer);
            this.searchTimer = setTimeout(() => this.search(), 300);
          },
        })),
      this.categories.length ? h('div', { class: 'field' },
        h('label', { for: 'rb-category', class: 'visually-hidden' }, t('rb.category')),
        h('select', {
          id: 'rb-category', onchange: (ev) => { this.category = ev.target.value; this.search(); },
        }, h('option', { value: '' }, t('rb.allCategories')),
        this.categories.map((c) => h('option', { value: c }, c)))) : null);
    const select = search.querySelector('#rb-category');
    if (select) select.value = this.category;
    const list = this.catalog.length ? h('ul', { class: 'rows compact', id: 'rb-catalog-list' },
      this.catalog.map((tone) => h('li', { class: 'row tone', dataset: { toneId: tone.tone_id } },
        this.playButton(tone.tone_id, tone.title),
        h('div', { class: 'row-text' },
          h('span', { class: 'row-title' }, tone.title),
          h('span', { class: 'row-sub' }, [tone.artist, tone.category,
            formatDuration(tone.duration_s)].filter(Boolean).join(' · '))),
        h('div', { class: 'row-actions' },
          owned.has(tone.tone_id) ? h('span', { class: 'chip' }, t('rb.owned'))
            : h('button', {
              type: 'button', class: 'secondary small', dataset: { action: 'get-tone' },
              'aria-label': t('rb.getName', { title: tone.title, price: price(tone.price) }),
              onclick: () => this.get(tone),
            }, price(tone.price))))))
      : emptyState(this.query || this.category ? t('rb.noResults') : t('rb.catalogEmpty'));
    replace(slot, card(t('rb.catalogTitle'), h('div', { class: 'stack' }, search, list),
      { id: 'rb-catalog-card' }));
    if (focusSearch) {
      const input = slot.querySelector('#rb-search');
      input.focus();
      input.setSelectionRange(input.value.length, input.value.length);
    }
  }

  async search() {
    try {
      this.catalog = await this.api.tones({ q: this.query.trim(), category: this.category });
      const active = document.activeElement?.id;
      this.drawCatalog({ focusSearch: active === 'rb-search' });
      if (active === 'rb-category') this.root?.querySelector('#rb-category')?.focus();
    } catch (err) {
      toast(apiErrorText(err), { kind: 'error' });
    }
  }

  async get(tone) {
    try {
      await this.api.getTone(tone.tone_id);
      this.box = await this.api.toneBox();
      toast(t('rb.got', { title: tone.title }));
      this.drawAll();
    } catch (err) {
      toast(apiErrorText(err), { kind: 'error' });
    }
  }

  drawUpload() {
    const slot = this.root?.querySelector('#rb-upload');
    if (!slot) return;
    const status = h('p', { class: 'form-status', role: 'status', id: 'upload-status' });
    const form = h('form', { class: 'stack', novalidate: true },
      h('div', { class: 'field' }, h('label', { for: 'upload-file' }, t('rb.uploadFile')),
        h('input', { id: 'upload-file', name: 'file', type: 'file', accept: 'audio/*' })),
      h('div', { class: 'field' }, h('label', { for: 'upload-title' }, t('rb.uploadName')),
        h('input', { id: 'upload-title', name: 'title', maxlength: 100, autocomplete: 'off' })),
      status,
      h('button', { type: 'submit', class: 'primary' }, t('rb.upload')));
    form.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      const file = form.querySelector('#upload-file').files[0];
      if (!file) {
        status.textContent = t('rb.chooseFile');
        form.querySelector('#upload-file').focus();
        return;
      }
      const title = form.querySelector('#upload-title').value.trim()
        || file.name.replace(/\.[^.]+$/, '');
      const button = form.querySelector('button[type=submit]');
      button.disabled = true;
      status.textContent = t('rb.uploading');
      try {
        const tone = await this.api.uploadTone(file, title);
        form.reset();
        status.textContent = t('rb.uploaded', { title: tone.title });
        this.box = await this.api.toneBox();
        this.drawAll();
      } catch (err) {
        status.textContent = apiErrorText(err);
      } finally {
        button.disabled = false;
      }
    });
    replace(slot, card(t('rb.uploadTitle'), form, { id: 'rb-upload-card' }));
  }

  // --------------------------------------------------------------------------- player

  playButton(toneId, title) {
    const playing = this.playing === toneId;
    return h('button', {
      type: 'button', class: 'icon-button play', dataset: { action: 'play', toneId },
      'aria-pressed': String(playing),
      'aria-label': playing ? t('rb.stopName', { title }) : t('rb.playName', { title }),
      onclick: () => this.toggle(toneId),
    }, icon(playing ? 'stop' : 'play'));
  }

  async toggle(toneId) {
    if (this.playing === toneId) {
      this.player.pause();
      this.setPlaying(null);
      return;
    }
    try {
      if (!this.urls.has(toneId)) {
        this.urls.set(toneId, URL.createObjectURL(await this.api.toneAudio(toneId)));
      }
      this.player.src = this.urls.get(toneId);
      await this.player.play();
      this.setPlaying(toneId);
    } catch (err) {
      toast(err?.code ? apiErrorText(err) : t('rb.cannotPlay'), { kind: 'error' });
    }
  }

  setPlaying(toneId) {
    this.playing = toneId;
    if (!this.root) return;
    for (const button of this.root.querySelectorAll('[data-action="play"]')) {
      const on = button.dataset.toneId === toneId;
      const title = button.closest('.tone')?.querySelector('.row-title')?.textContent || '';
      button.setAttribute('aria-pressed', String(on));
      button.setAttribute('aria-label', on ? t('rb.stopName', { title }) : t('rb.playName', { title }));
      button.replaceChildren(icon(on ? 'stop' : 'play'));
    }
  }
}

function weekday(day) {
  // 2024-01-01 was a Monday; the API counts 0 = Monday ... 6 = Sunday
  return new Intl.DateTimeFormat(language(), { weekday: 'short' }).format(new Date(2024, 0, 1 + day));
}

function price(value) {
  if (!value) return t('rb.free');
  return t('rb.price', { price: Number(value).toFixed(2) });
}
