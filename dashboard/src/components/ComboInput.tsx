import { useEffect, useId, useState, type KeyboardEvent } from 'react';

interface ComboInputProps {
  label: string;
  value: string;
  /** Called with the new text when it is chosen from the list, on Enter, or when leaving the field. */
  onCommit: (value: string) => void;
  options: string[];
  placeholder?: string;
  /** Visually hide the label (it is still read by screen readers). */
  hideLabel?: boolean;
  className?: string;
  disabled?: boolean;
  describe?: (option: string) => string | undefined;
}

/**
 * A text field with suggestions (a native datalist, so keyboard and screen readers work as
 * everywhere else). Typing does not change the query at each keystroke: the value is committed
 * when a suggestion is picked, on Enter, or on blur.
 */
export function ComboInput({ label, value, onCommit, options, placeholder, hideLabel, className, disabled, describe }: ComboInputProps) {
  const id = useId();
  const listId = `${id}-list`;
  const [draft, setDraft] = useState(value);
  useEffect(() => setDraft(value), [value]);

  const commit = (v: string) => {
    if (v !== value) onCommit(v);
  };
  const onKeyDown = (e: KeyboardEvent<HTMLInputElement>) => {
    if (e.key === 'Enter') {
      e.preventDefault();
      commit(draft);
    } else if (e.key === 'Escape') {
      setDraft(value);
    }
  };
  return (
    <div className={`field ${className ?? ''}`}>
      <label htmlFor={id} className={hideLabel ? 'visually-hidden' : undefined}>
        {label}
      </label>
      <input
        id={id}
        list={listId}
        value={draft}
        placeholder={placeholder}
        disabled={disabled}
        autoComplete="off"
        spellCheck={false}
        onChange={(e) => {
          const v = e.target.value;
          setDraft(v);
          // A pick from the list (not typing) commits at once.
          const inputType = (e.nativeEvent as InputEvent).inputType;
          if ((inputType === undefined || inputType === 'insertReplacementText') && options.includes(v)) commit(v);
        }}
        onBlur={() => commit(draft)}
        onKeyDown={onKeyDown}
      />
      <datalist id={listId}>
        {options.map((o) => (
          <option key={o} value={o}>
            {describe?.(o)}
          </option>
        ))}
      </datalist>
    </div>
  );
}
